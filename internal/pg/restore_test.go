package pg

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/pgtest"
)

func TestTablespaceMap(t *testing.T) {
	m, err := ParseTablespaceMap("16390 /srv/ts one\n16391 /odd\\\\dir\\\nwith newline\n")
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]string{16390: "/srv/ts one", 16391: "/odd\\dir\nwith newline"}
	if !maps.Equal(m, want) {
		t.Fatalf("parsed %v, want %v", m, want)
	}
	if got := FormatTablespaceMap(want); got != "16390 /srv/ts one\n16391 /odd\\\\dir\\\nwith newline\n" {
		t.Errorf("formatted %q", got)
	}
	if m, err := ParseTablespaceMap(""); err != nil || len(m) != 0 {
		t.Errorf("empty map: %v, %v", m, err)
	}
	for _, bad := range []string{"16390\n", "x /a\n", "0 /a\n", "16390 /a\n16390 /b\n", "16390 /a\\", " /a\n"} {
		if _, err := ParseTablespaceMap(bad); err == nil {
			t.Errorf("ParseTablespaceMap(%q) accepted", bad)
		}
	}
}

func FuzzTablespaceMap(f *testing.F) {
	f.Add("16390 /srv/ts\n")
	f.Add("1 a\\\nb\r2 c\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseTablespaceMap(s)
		if err != nil {
			return
		}
		// What parses survives a round trip.
		again, err := ParseTablespaceMap(FormatTablespaceMap(m))
		if err != nil || !maps.Equal(m, again) {
			t.Fatalf("round trip of %v: %v, %v", m, again, err)
		}
	})
}

func TestCheckEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := checkEmpty(filepath.Join(dir, "new"), false); err != nil {
		t.Errorf("nonexistent directory: %v", err)
	}
	if err := checkEmpty(dir, false); err != nil {
		t.Errorf("empty directory: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o600)
	if err := checkEmpty(dir, false); err == nil || !strings.Contains(err.Error(), "--overwrite") {
		t.Errorf("non-empty directory: %v", err)
	}
	if err := checkEmpty(dir, true); err != nil {
		t.Errorf("non-empty directory with overwrite: %v", err)
	}
}

func TestStopMessage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	log := "2024-05-01 LOG:  starting point-in-time recovery to 2024-05-01 12:00:00+00\n" +
		"2024-05-01 LOG:  recovery stopping before commit of transaction 1234, time 2024-05-01 12:00:00.5+00\n" +
		"2024-05-01 LOG:  pausing at the end of recovery\n" +
		"2024-05-01 LOG:  last completed transaction was at log time 2024-05-01 11:59:59.9+00\n"
	os.WriteFile(p, []byte(log), 0o600)
	if got := stopMessage(p, 0); got != "recovery stopping before commit of transaction 1234, time 2024-05-01 12:00:00.5+00" {
		t.Errorf("stopMessage = %q", got)
	}
	// An earlier recovery's lines are not this one's.
	earlier := "LOG:  recovery stopping before commit of transaction 999, time 2024-04-01 12:00:00+00\n"
	os.WriteFile(p, []byte(earlier+"LOG:  last completed transaction was at log time 2024-05-01 11:59:59.9+00\n"), 0o600)
	if got := stopMessage(p, int64(len(earlier))); got != "last completed transaction was at log time 2024-05-01 11:59:59.9+00" {
		t.Errorf("stopMessage after an earlier recovery's log = %q", got)
	}
	os.WriteFile(p, []byte("LOG:  last completed transaction was at log time 2024-05-01 11:59:59.9+00\n"), 0o600)
	if got := stopMessage(p, 0); got != "last completed transaction was at log time 2024-05-01 11:59:59.9+00" {
		t.Errorf("stopMessage without a target = %q", got)
	}
	if got := stopMessage(filepath.Join(t.TempDir(), "none"), 0); got != "" {
		t.Errorf("stopMessage of a missing log = %q", got)
	}
}

func TestRestoreLogFile(t *testing.T) {
	if got := DefaultLogFile("/srv/pg/main/"); got != "/srv/pg/main.nestguard-restore.log" {
		t.Errorf("DefaultLogFile = %s", got)
	}
	if err := checkLogFile("/srv/pg/main/log/x.log", "/srv/pg/main"); err == nil {
		t.Error("a log inside the data directory accepted")
	}
	for _, ok := range []string{"/srv/pg/main.log", "/srv/pg/mainx/x.log", "/var/log/x.log"} {
		if err := checkLogFile(ok, "/srv/pg/main"); err != nil {
			t.Errorf("checkLogFile(%s): %v", ok, err)
		}
	}
}

// TestWaitExit: a shutdown at the target is a server that ran and left
// pg_control shut down in recovery; one that has not started yet (no
// postmaster.pid so far: pg_ctl -W start returns before it is written)
// is waited for, and one that failed during recovery is an error.
func TestWaitExit(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	control := func(state uint32) []byte {
		b := make([]byte, 8192)
		binary.NativeEndian.PutUint32(b[8:], 1300)
		binary.NativeEndian.PutUint32(b[16:], state)
		return b
	}
	setControl := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, controlFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pid := filepath.Join(dir, "postmaster.pid")
	before := control(6) // the backup's: in production
	setControl(before)

	// Not started yet: no postmaster.pid, pg_control as restored.
	if err := waitExit(t.Context(), dir, before, time.Now().Add(150*time.Millisecond)); err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Errorf("a server that never started: %v", err)
	}
	// Running.
	os.WriteFile(pid, []byte("1\n"), 0o600)
	if err := waitExit(t.Context(), dir, before, time.Now().Add(150*time.Millisecond)); err == nil || !strings.Contains(err.Error(), "did not shut down") {
		t.Errorf("waitExit while postmaster.pid exists: %v", err)
	}
	// Failed during recovery (FATAL: the WAL ends before the target).
	os.Remove(pid)
	setControl(control(dbInArchiveRecovery))
	if err := waitExit(t.Context(), dir, before, time.Now().Add(time.Second)); err == nil || !strings.Contains(err.Error(), "without reaching the target") {
		t.Errorf("a server that failed during recovery: %v", err)
	}
	// Shut down at the target, also between two looks (postmaster.pid
	// never seen).
	setControl(control(dbShutdownedInRecovery))
	if err := waitExit(t.Context(), dir, before, time.Now().Add(time.Second)); err != nil {
		t.Error(err)
	}
}

// stopServer stops a server Restore started, when the test ends.
func stopServer(t *testing.T, bin, dataDir string) {
	t.Cleanup(func() { pgtest.StopServer(t, bin, dataDir, "immediate") })
}

// testRestore recovers to a time between two commits, into a new
// directory with the tablespace relocated, and checks exactly the
// transactions committed by then are there.
func testRestore(t *testing.T, c *archivedCluster) {
	ctx := context.Background()
	c.Exec(t, "CREATE TABLE pitr (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
	var at []time.Time
	for i := 1; i <= 5; i++ {
		c.Exec(t, "INSERT INTO pitr (id) VALUES ($1)", i)
		ts, err := time.Parse("2006-01-02 15:04:05.999999-07", c.QueryString(t, "SELECT at FROM pitr WHERE id = $1", i))
		if err != nil {
			t.Fatal(err)
		}
		at = append(at, ts)
		time.Sleep(80 * time.Millisecond)
	}
	c.waitStored(t)
	target := at[2].Add(40 * time.Millisecond) // after the third commit, before the fourth
	oid := uint32(atoi(t, c.QueryString(t, "SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")))
	base := pgtest.TempDir(t)
	dataDir, tsDir := filepath.Join(base, "data"), filepath.Join(base, "ts moved")
	o := RestoreOptions{
		TargetDir: dataDir, Target: Target{Time: &target}, TargetAction: ActionPause,
		RestoreCommand: "cp '" + c.Archive + "/%f' %p", TablespaceMap: map[uint32]string{oid: tsDir},
		Start: true, BinDir: c.BinDir, Port: pgtest.FreePort(t), StartTimeout: 2 * time.Minute,
	}
	stopServer(t, c.BinDir, dataDir)
	res, err := Restore(ctx, c.Repo, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore %v, replay %v, total %v; %+v", res.RestoreTime, res.ReplayTime, res.TotalTime, *res.Recovery)
	if res.Recovery.State != "paused" || res.Recovery.LastCommit == nil || res.Recovery.LastCommit.After(target) ||
		res.Recovery.LastCommit.Before(at[2]) || !strings.Contains(res.Recovery.Message, "recovery stopping before commit") {
		t.Errorf("recovery point %+v for target %s", *res.Recovery, target)
	}
	if link, err := os.Readlink(filepath.Join(dataDir, "pg_tblspc", fmt.Sprint(oid))); err != nil || link != tsDir {
		t.Errorf("tablespace link: %q, %v", link, err)
	}
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", c.SocketDir, o.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, moved int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM pitr), (SELECT count(*) FROM moved)").Scan(&rows, &moved); err != nil {
		t.Fatal(err)
	}
	if rows != 3 || moved != 20000 {
		t.Errorf("restored cluster has %d ledger rows (want 3) and %d rows in the relocated tablespace (want 20000)", rows, moved)
	}

	// The target directory is now in use: a second restore is refused
	// before anything is written.
	if _, err := Restore(ctx, c.Repo, RestoreOptions{TargetDir: dataDir, Target: Target{Latest: true}, TargetAction: ActionPromote,
		RestoreCommand: "false"}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into a used directory: %v", err)
	}
	// A target before the oldest backup ended is refused, naming the window.
	early := at[0].Add(-time.Hour)
	empty := filepath.Join(base, "never")
	_, err = Restore(ctx, c.Repo, RestoreOptions{TargetDir: empty, Target: Target{Time: &early}, RestoreCommand: "false"})
	if !errors.Is(err, ErrOutsideWindow) {
		t.Errorf("restore to before the first backup: %v", err)
	}
	if _, err := os.Stat(empty); err == nil {
		t.Error("a refused restore created its target directory")
	}

	// The caller stops the server Restore started, as a drill will.
	if err := res.Server.Stop(ctx, "fast", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the server still runs after Stop (postmaster.pid: %v)", err)
	}
	if err := res.Server.Stop(ctx, "fast", time.Minute); err != nil {
		t.Errorf("Stop of a stopped server: %v", err)
	}
}

// testStandby: a standby Restore starts is reported running only once it
// replayed the last transaction the archive holds; one that cannot read
// a segment before it (restore_command fails for it, and a standby asks
// again for ever) is a failure, and is stopped (hostile test: exit 0 and
// "standby running" for a standby stuck for good). With the segment
// readable again, a standby restored the same way catches up.
func testStandby(t *testing.T, c *archivedCluster) {
	ctx := context.Background()
	c.Exec(t, "INSERT INTO ledger (v) VALUES ('in the segment the standby cannot read')")
	seg := c.waitStored(t)
	c.Exec(t, "INSERT INTO ledger (v) VALUES ('after it')")
	c.waitStored(t)
	oid := uint32(atoi(t, c.QueryString(t, "SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")))
	hidden := filepath.Join(c.Archive, seg+".hidden")
	if err := os.Rename(filepath.Join(c.Archive, seg), hidden); err != nil {
		t.Fatal(err)
	}
	// A segment of the base backup's own span damaged: the standby could
	// never become consistent, and pg_ctl would wait out --start-timeout
	// (hostile test). Refused before the server starts.
	st, err := Status(ctx, c.Repo)
	if err != nil {
		t.Fatal(err)
	}
	span := st.SpanSegments(st.BaseBackups[len(st.BaseBackups)-1].Snapshot)
	if len(span) == 0 {
		t.Fatal("no span segments")
	}
	be := c.Repo.Backend()
	h := backend.Handle{Type: backend.WALFile, Name: span[0]}
	good, err := backend.ReadAll(ctx, be, h, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) {
		t.Helper()
		if err := be.Remove(ctx, h); err != nil {
			t.Fatal(err)
		}
		if err := be.Save(ctx, h, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0x01
	put(bad)
	standby := func(name string) (RestoreOptions, error) {
		base := pgtest.TempDir(t)
		o := RestoreOptions{
			TargetDir: filepath.Join(base, name), Target: Target{Latest: true}, Standby: true,
			RestoreCommand: "cp '" + c.Archive + "/%f' %p", TablespaceMap: map[uint32]string{oid: filepath.Join(base, "ts")},
			Start: true, BinDir: c.BinDir, Port: pgtest.FreePort(t), StartTimeout: 2 * time.Minute, standbyStall: 3 * time.Second,
		}
		stopServer(t, c.BinDir, o.TargetDir)
		_, err := Restore(ctx, c.Repo, o)
		return o, err
	}
	o, err := standby("inconsistent")
	if err == nil || !strings.Contains(err.Error(), "needs to be consistent") || !strings.Contains(err.Error(), span[0]) {
		t.Fatalf("a standby whose base backup's WAL %s is damaged: %v", span[0], err)
	}
	if _, err := os.Stat(filepath.Join(o.TargetDir, "postmaster.pid")); err == nil {
		t.Error("a standby that cannot become consistent was started")
	}
	put(good)
	o, err = standby("stuck")
	if err == nil || !strings.Contains(err.Error(), "stopped replaying") || !strings.Contains(err.Error(), "was stopped") {
		t.Fatalf("a standby that cannot read %s: %v", seg, err)
	}
	if _, err := os.Stat(filepath.Join(o.TargetDir, "postmaster.pid")); err == nil {
		t.Error("the stuck standby was left running")
	}
	if err := os.Rename(hidden, filepath.Join(c.Archive, seg)); err != nil {
		t.Fatal(err)
	}
	o, err = standby("caught up")
	if err != nil {
		t.Fatalf("a standby with every segment readable: %v", err)
	}
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", c.SocketDir, o.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT count(*), pg_is_in_recovery() FROM ledger WHERE v = 'after it'").Scan(&n, &inRecovery); err != nil {
		t.Fatal(err)
	}
	if n != 1 || !inRecovery {
		t.Errorf("the standby has %d of the last row, in recovery %v: want 1, true", n, inRecovery)
	}
}

// TestPGCtlSeconds: pg_ctl's -t is whole seconds, rounded up, never 0
// (--start-timeout 500ms was -t 0: pg_ctl failed at once and left the
// server starting; hostile test).
func TestPGCtlSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", 500 * time.Millisecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", time.Hour: "3600"} {
		if got := pgCtlSeconds(d); got != want {
			t.Errorf("pgCtlSeconds(%v) = %s, want %s", d, got, want)
		}
	}
}

// TestExpandRestoreCommand: the placeholders as PostgreSQL fills them.
func TestExpandRestoreCommand(t *testing.T) {
	got := expandRestoreCommand(`f=x/%f; [ -f "$f" ] && mv "$f" "%p" || ng restore-wal %f %p # 100%% %r %q`, "00000001.history", "a/RECOVERYXLOG")
	want := `f=x/00000001.history; [ -f "$f" ] && mv "$f" "a/RECOVERYXLOG" || ng restore-wal 00000001.history a/RECOVERYXLOG # 100% 000000010000000000000001 %q`
	if got != want {
		t.Errorf("expanded:\n%s\nwant:\n%s", got, want)
	}
}
