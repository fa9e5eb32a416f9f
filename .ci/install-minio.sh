#!/usr/bin/env bash
# A pinned MinIO server for the S3 tests, built from source with the Go
# toolchain (no prebuilt download). The binary is cached in GOPATH/bin and
# only rebuilt when the pin changes.
set -euo pipefail
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
bin="$(go env GOPATH)/bin/minio"
stamp="$bin.version"
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$MINIO_VERSION" ]; then
	echo "minio $MINIO_VERSION cached at $bin"
	exit 0
fi
echo "building minio $MINIO_VERSION (a few minutes, once per machine)"
(cd "$(mktemp -d)" && go install "github.com/minio/minio@$MINIO_VERSION")
echo "$MINIO_VERSION" > "$stamp"
"$bin" --version | sed -n 1p
