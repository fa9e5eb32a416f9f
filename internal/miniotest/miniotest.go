// Package miniotest runs a throw-away MinIO server on a loopback port for
// tests, so S3 code is tested against a real S3 implementation (Object Lock,
// conditional writes, multipart) instead of a mock.
//
// The server speaks TLS with a certificate made for the test (written to
// Server.CACert), so tests exercise the same path production uses: HTTPS
// with a custom CA bundle. Clients must use path-style addressing.
//
// Tests skip when no minio binary is found, except in CI (CI=true), where a
// missing binary fails the test: CI builds the pinned server.
package miniotest

import (
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Binary returns the path of the minio server binary: $MINIO_BIN, else
// minio in PATH, else $(go env GOPATH)/bin/minio; "" if there is none.
func Binary() string {
	if p := os.Getenv("MINIO_BIN"); p != "" {
		if isExecutable(p) {
			return p
		}
		return ""
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	for _, gopath := range goPaths() {
		if p := filepath.Join(gopath, "bin", "minio"); isExecutable(p) {
			return p
		}
	}
	return ""
}

// goPaths lists GOPATH entries, asking the go command first because
// `go env -w` settings are invisible to go/build.
func goPaths() []string {
	var out []string
	if b, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		out = append(out, filepath.SplitList(strings.TrimSpace(string(b)))...)
	}
	return append(out, filepath.SplitList(build.Default.GOPATH)...)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Require returns the minio binary. Without one it skips the test, or
// fails it in CI, where the binary is part of the setup.
func Require(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin != "" {
		return bin
	}
	const how = "no minio binary: set MINIO_BIN, put minio in PATH, or `go install github.com/minio/minio@<pinned version>`"
	if os.Getenv("CI") == "true" {
		t.Fatal(how + " (CI requires it)")
	}
	t.Skip(how)
	return ""
}
