// Package miniotest runs a throw-away S3 server on a loopback port for
// tests, so S3 code is tested against real S3 implementations (Object Lock,
// conditional writes, multipart) instead of a mock: MinIO, and versitygw
// (the Versity S3 Gateway, posix backend with versioning), whose answers
// differ from MinIO's in places (see Each).
//
// The server speaks TLS with a certificate made for the test (written to
// Server.CACert), so tests exercise the same path production uses: HTTPS
// with a custom CA bundle. Clients must use path-style addressing.
//
// Tests skip when a server's binary is not found, except in CI (CI=true),
// where a missing binary fails the test: CI builds the pinned servers
// (.ci/install-minio.sh, .ci/install-versitygw.sh).
package miniotest

import (
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Kind names an S3 server implementation.
type Kind string

// The servers tests run against.
const (
	MinIO   Kind = "minio"
	Versity Kind = "versitygw"
)

// Kinds is every server kind, in the order Each runs them.
var Kinds = []Kind{MinIO, Versity}

// Each runs fn as a subtest per server kind (named after it), so that a
// test covers every S3 implementation. A kind whose binary is missing is
// skipped (failed in CI) by StartKind.
func Each(t *testing.T, fn func(t *testing.T, k Kind)) {
	t.Helper()
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) { fn(t, k) })
	}
}

// envVar is the variable naming the binary of kind k: MINIO_BIN,
// VERSITYGW_BIN.
func (k Kind) envVar() string { return strings.ToUpper(string(k)) + "_BIN" }

// Binary returns the path of the minio server binary; see BinaryOf.
func Binary() string { return BinaryOf(MinIO) }

// BinaryOf returns the path of the server binary of kind k: $MINIO_BIN
// (or $VERSITYGW_BIN), else the binary in PATH, else
// $(go env GOPATH)/bin/minio (or versitygw); "" if there is none.
func BinaryOf(k Kind) string {
	if p := os.Getenv(k.envVar()); p != "" {
		if isExecutable(p) {
			return p
		}
		return ""
	}
	if p, err := exec.LookPath(string(k)); err == nil {
		return p
	}
	for _, gopath := range goPaths() {
		if p := filepath.Join(gopath, "bin", string(k)); isExecutable(p) {
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
	return RequireKind(t, MinIO)
}

// RequireKind is Require for the server of kind k.
func RequireKind(t testing.TB, k Kind) string {
	t.Helper()
	bin := BinaryOf(k)
	if bin != "" {
		return bin
	}
	how := fmt.Sprintf("no %s binary: set %s, put %s in PATH, or run .ci/install-%s.sh", k, k.envVar(), k, k)
	if os.Getenv("CI") == "true" {
		t.Fatal(how + " (CI requires it)")
	}
	t.Skip(how)
	return ""
}
