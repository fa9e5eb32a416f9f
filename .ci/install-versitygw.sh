#!/usr/bin/env bash
# A pinned versitygw (Versity S3 Gateway), the second S3 server the S3
# tests run against (internal/miniotest), built from source with the Go
# toolchain. The binary is cached in GOPATH/bin and only rebuilt when the
# pin changes.
set -euo pipefail
VERSITYGW_VERSION=v1.8.0
bin="$(go env GOPATH)/bin/versitygw"
stamp="$bin.version"
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$VERSITYGW_VERSION" ]; then
	echo "versitygw $VERSITYGW_VERSION cached at $bin"
	exit 0
fi
echo "building versitygw $VERSITYGW_VERSION (a minute or two, once per machine)"
(cd "$(mktemp -d)" && go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION")
echo "$VERSITYGW_VERSION" > "$stamp"
"$bin" --version | sed -n 1p
