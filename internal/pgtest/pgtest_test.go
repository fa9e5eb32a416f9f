package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCluster(t *testing.T) {
	archive := TempDir(t)
	Chown(t, archive)
	c := Start(t, Options{
		ArchiveCommand: "test ! -f " + archive + "/%f && cp %p " + archive + "/%f",
		Checksums:      true,
		Settings:       map[string]string{"application_name": "pgtest's self-test"},
	})

	if got := c.QueryString(t, "SHOW wal_level"); got != "replica" {
		t.Errorf("wal_level = %q", got)
	}
	if got := c.QueryString(t, "SHOW data_checksums"); got != "on" {
		t.Errorf("data_checksums = %q", got)
	}
	if got := c.QueryString(t, "SHOW application_name"); got != "pgtest's self-test" {
		t.Errorf("setting with a quote: %q", got)
	}
	if got := c.QueryString(t, "SELECT NULL::int"); got != "" {
		t.Errorf("NULL read as %q", got)
	}
	c.Exec(t, "CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 1000)")
	if got := c.QueryInt(t, "SELECT sum(v) FROM t WHERE v > $1", 990); got != 9955 {
		t.Errorf("sum = %d", got)
	}

	c.Pgbench(t, "-i", "-s", "1", "-q")
	if n := c.QueryInt(t, "SELECT count(*) FROM pgbench_accounts"); n != 100000 {
		t.Errorf("pgbench_accounts has %d rows", n)
	}
	if out := c.Run(t, "psql", "-XAtc", "SELECT current_user"); strings.TrimSpace(out) != "postgres" {
		t.Errorf("psql through Run: %q", out)
	}

	seg := c.SwitchWAL(t)
	if len(seg) != 24 {
		t.Fatalf("SwitchWAL returned %q", seg)
	}
	c.WaitArchived(t, seg, 30*time.Second)
	if _, err := os.Stat(filepath.Join(archive, seg)); err != nil {
		t.Errorf("archive_command did not store %s: %v", seg, err)
	}
	c.Exec(t, "INSERT INTO t VALUES (0)")
	next := c.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	if next <= seg {
		t.Errorf("after the switch, WAL is in %s, not after %s", next, seg)
	}

	c.Stop(t)
	c.Stop(t) // stopping twice is harmless

	// The stopped data directory starts again elsewhere, with the data.
	d := StartExisting(t, c.DataDir, Options{})
	if d.Port == 0 || d.SocketDir == c.SocketDir {
		t.Errorf("restarted cluster reuses the socket directory")
	}
	if got := d.QueryInt(t, "SELECT count(*) FROM t"); got != 1001 {
		t.Errorf("after restart: %d rows", got)
	}
}

func TestWaitArchivedReportsFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a timeout")
	}
	c := Start(t, Options{ArchiveCommand: "echo archive refused >&2; exit 1"})
	c.Exec(t, "CREATE TABLE t AS SELECT generate_series(1, 100) v")
	seg := c.SwitchWAL(t)
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.WaitArchived(ft, seg, 2*time.Second)
	}()
	<-done
	if !strings.Contains(ft.msg, "failed_count=") || !strings.Contains(ft.msg, "archive refused") {
		t.Errorf("failure report lacks the archiver's state or log:\n%s", ft.msg)
	}
	// Let the shutdown checkpoint archive quickly instead of retrying.
	c.Exec(t, "ALTER SYSTEM SET archive_command = 'true'")
	c.Exec(t, "SELECT pg_reload_conf()")
}

func TestRequireSkipsOutsideCI(t *testing.T) {
	t.Setenv("PG_BINDIR", t.TempDir()) // no binaries there
	if BinDir() != "" {
		t.Fatal("BinDir accepted a directory without PostgreSQL")
	}
	t.Setenv("CI", "true")
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Require(ft)
	}()
	<-done
	if !ft.failed || ft.skipped {
		t.Errorf("in CI a missing PostgreSQL must fail, not skip: failed=%v skipped=%v", ft.failed, ft.skipped)
	}
	t.Setenv("CI", "")
	ft = &fakeT{TB: t}
	done = make(chan struct{})
	go func() {
		defer close(done)
		Require(ft)
	}()
	<-done
	if ft.failed || !ft.skipped {
		t.Errorf("outside CI a missing PostgreSQL must skip: failed=%v skipped=%v", ft.failed, ft.skipped)
	}
}

// fakeT records Fatal and Skip instead of ending the test; like the
// testing package, they end the calling goroutine.
type fakeT struct {
	testing.TB
	msg             string
	failed, skipped bool
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatal(args ...any) {
	f.failed, f.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeT) Skip(args ...any) {
	f.skipped, f.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}

// TestServerDiesWithTest: a test binary killed before its cleanups (a
// timeout, kill -9) leaves no server running.
func TestServerDiesWithTest(t *testing.T) {
	if os.Getenv("PGTEST_ORPHAN_CHILD") == "1" {
		c := Start(t, Options{})
		fmt.Printf("cluster %s %s\n", c.Dir, strings.TrimSpace(strings.SplitN(readFile(t, filepath.Join(c.DataDir, "postmaster.pid")), "\n", 2)[0]))
		time.Sleep(time.Minute) // killed before this ends
		return
	}
	Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithTest$")
	cmd.Env = append(os.Environ(), "PGTEST_ORPHAN_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var dir string
	var pid int
	if _, err := fmt.Fscanf(out, "cluster %s %d\n", &dir, &pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not report its cluster: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGQUIT)
			t.Fatalf("postmaster %d still runs 20s after its test died", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
