#!/usr/bin/env bash
# A C compiler and glibc's static libraries: cgo compiles libzstd into
# nestguard (internal/compress) and `make build` links the binary
# statically. Debian's gcc and libc6-dev; usually already there.
set -euo pipefail
if command -v gcc >/dev/null && ls /usr/lib/*-linux-gnu/libc.a >/dev/null 2>&1; then
	echo "C toolchain present: $(gcc --version | sed -n 1p)"
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
gcc --version | sed -n 1p
