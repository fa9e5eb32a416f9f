#!/usr/bin/env bash
# b3sum, the BLAKE3 reference tool, for the test that checks object names
# without the key as anyone could (cmd/nestguard TestObjectNamesWithoutKey;
# without it that test checks the SHA-256 repository only). Debian's b3sum.
set -euo pipefail
if command -v b3sum >/dev/null; then
	echo "b3sum present"
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends b3sum >/dev/null
command -v b3sum
