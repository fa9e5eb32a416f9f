#!/usr/bin/env bash
# setfacl and setcap, for the tests that back up and restore POSIX ACLs and
# file capabilities (cmd/nestguard TestXattrsAndACLs; without them it skips
# those parts). Debian's acl and libcap2-bin.
set -euo pipefail
if command -v setfacl >/dev/null && command -v setcap >/dev/null; then
	echo "acl tools present"
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends acl libcap2-bin >/dev/null
command -v setfacl setcap
