// Package pgtest runs throw-away PostgreSQL clusters for tests: initdb in a
// temporary directory, a free loopback port, the server stopped and the
// directory removed when the test ends.
//
// PostgreSQL refuses to run as root, so when the tests run as root every
// server process, client tool and command the server starts (archive_command,
// restore_command) runs as the "postgres" OS user. Directories those
// processes use must then be traversable (TempDir) and owned by postgres
// where they write (Chown).
package pgtest

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// BinDir finds PostgreSQL's binaries: $PG_BINDIR, else the newest
// /usr/lib/postgresql/<version>/bin (Debian's layout), else the directory
// of pg_ctl on $PATH; "" if none.
func BinDir() string {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		if hasServer(d) {
			return d
		}
		return ""
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	type versioned struct {
		dir string
		v   float64
	}
	var found []versioned
	for _, d := range dirs {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		if err == nil && hasServer(d) {
			found = append(found, versioned{d, v})
		}
	}
	if len(found) > 0 {
		return slices.MaxFunc(found, func(a, b versioned) int { return cmp.Compare(a.v, b.v) }).dir
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil && hasServer(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	return ""
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Require returns BinDir, or skips the test when PostgreSQL is missing
// outside CI; in CI (CI=true) a missing PostgreSQL fails the test, so that
// a broken install cannot turn the PostgreSQL tests into silent skips.
func Require(t testing.TB) string {
	t.Helper()
	d := BinDir()
	if d != "" {
		return d
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("PostgreSQL binaries not found (CI=true): install postgresql or set PG_BINDIR")
	}
	t.Skip("PostgreSQL binaries not found: install postgresql or set PG_BINDIR to run this test")
	return ""
}

// TempDir returns a new directory that every user can traverse (0755), so
// that processes running as postgres reach what the test puts inside. It
// is removed when the test ends.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nestguard-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Credential is what processes that must run as PostgreSQL's OS user run
// with: the postgres user when the test runs as root, nil (the current
// user) otherwise.
func Credential(t testing.TB) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root, PostgreSQL needs the postgres OS user: %v", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("postgres user has ids %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
}

// AsPostgres makes cmd run as the postgres user when the test runs as root.
func AsPostgres(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if c := Credential(t); c != nil {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Credential = c
	}
}

// Chown gives paths (recursively) to the postgres user when the test runs
// as root; otherwise it does nothing (everything already belongs to the
// user the server runs as).
func Chown(t testing.TB, paths ...string) {
	t.Helper()
	c := Credential(t)
	if c == nil {
		return
	}
	for _, p := range paths {
		err := filepath.Walk(p, func(path string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, int(c.Uid), int(c.Gid))
		})
		if err != nil {
			t.Fatalf("giving %s to the postgres user: %v", p, err)
		}
	}
}

// run runs cmd (already set up) and returns stdout, failing the test with
// stderr on error.
func run(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), err, tail(stdout.String(), 40), tail(stderr.String(), 40))
	}
	return stdout.String()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
