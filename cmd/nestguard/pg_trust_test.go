package main

// End-to-end tests of what issue 16 found in base backups and
// point-in-time recovery: a backup of the wrong data directory, restore
// targets the WAL cannot reach, and logs kept in the data directory.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/pgtest"
)

// TestPGBackupWrongPGData: a --pgdata that is not the data directory of
// the server --dsn reaches (an earlier copy of the same cluster, another
// cluster's directory) is refused before anything is stored, naming both
// directories; the server's own directory, even through a symlink, is
// backed up.
func TestPGBackupWrongPGData(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Exec(t, "CREATE TABLE t (id int)")
	c.Exec(t, "INSERT INTO t SELECT generate_series(1, 1000)")
	c.Exec(t, "CHECKPOINT")
	stale := filepath.Join(p.dir, "stale copy")
	if out, err := exec.Command("cp", "-a", c.DataDir, stale).CombinedOutput(); err != nil {
		t.Fatalf("copying the data directory: %v\n%s", err, out)
	}
	c.Exec(t, "INSERT INTO t SELECT generate_series(1001, 5000)")
	c.Exec(t, "CHECKPOINT")

	other := pgtest.Start(t, pgtest.Options{})
	for _, tc := range []struct{ name, dir string }{{"stale copy", stale}, {"another cluster", other.DataDir}} {
		res := p.run("pg", "backup", "--pgdata", tc.dir, "--dsn", c.DSN())
		if res.code != 1 || !strings.Contains(res.stderr, tc.dir) || !strings.Contains(res.stderr, c.DataDir) {
			t.Errorf("%s: pg backup exit %d, want 1 naming %s and %s\n%s%s", tc.name, res.code, tc.dir, c.DataDir, res.stdout, res.stderr)
		}
	}
	var snaps []map[string]any
	if err := json.Unmarshal([]byte(p.must("snapshots", "--json")), &snaps); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots after refused backups: %d, %v", len(snaps), err)
	}

	link := filepath.Join(p.dir, "link")
	if err := os.Symlink(c.DataDir, link); err != nil {
		t.Fatal(err)
	}
	p.must("pg", "backup", "--pgdata", link, "--dsn", c.DSN())
}

// insertRow commits one ledger row and returns its id, transaction id
// and commit time (clock_timestamp() just before the commit).
func insertRow(t *testing.T, c *pgtest.Cluster) (id int64, xid string, at time.Time) {
	t.Helper()
	conn := connect(t, c.DSN())
	err := conn.QueryRow(context.Background(), "INSERT INTO ledger (amount) VALUES (1) RETURNING id, xid::text, committed_at").Scan(&id, &xid, &at)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	return id, xid, at
}

// refused runs a pg restore that must be refused before anything is
// written, with a message containing each of msgs.
func (p *pitrEnv) refused(t *testing.T, what string, args []string, msgs ...string) {
	t.Helper()
	dir := filepath.Join(p.dir, "refused")
	res := p.run(append([]string{"--key-file", p.keyFile, "pg", "restore", "--target-dir", dir, "--start", "--port", strconv.Itoa(pgtest.FreePort(t))}, args...)...)
	stopAtEnd(t, p.c.BinDir, dir)
	if res.code != 1 {
		t.Errorf("%s: exit %d, want 1\n%s%s", what, res.code, res.stdout, res.stderr)
	}
	for _, m := range msgs {
		if !strings.Contains(res.stderr, m) {
			t.Errorf("%s: the refusal lacks %q:\n%s", what, m, res.stderr)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s: the refused restore wrote %s", what, dir)
		os.RemoveAll(dir)
	}
	t.Logf("%s: %s", what, strings.TrimSpace(res.stderr))
}

// TestPGRestoreTargetChoice: pg restore picks the base backup a
// transaction id or restore point target needs by where its record is in
// the WAL (an older one when a newer backup ended after it), refuses a
// time after the last archived commit, and checks the whole WAL chain of
// the backup --from names, all before writing anything.
func TestPGRestoreTargetChoice(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{Settings: map[string]string{"autovacuum": "off"}})
	c := p.c
	c.Exec(t, ledgerTable)
	a := p.backup(t, c)
	id1, xid1, _ := insertRow(t, c)
	c.Exec(t, "SELECT pg_create_restore_point('before b')")
	id2, _, _ := insertRow(t, c)
	gapSeg := switchAndWait(t, c)
	p.backup(t, c) // b
	id3, _, at3 := insertRow(t, c)
	time.Sleep(300 * time.Millisecond)
	id4, _, at4 := insertRow(t, c)
	// The segment closes well after the last commit: its archive time is
	// not a commit time.
	time.Sleep(1500 * time.Millisecond)
	last := c.SwitchWAL(t)
	c.WaitArchived(t, last, time.Minute)

	// A transaction and a restore point before the newer backup b: only a
	// reaches them.
	r := p.restore(t, "--to-xid", xid1)
	if r.Snapshot != a.Snapshot {
		t.Errorf("--to-xid %s restored base backup %s, want %s (the one before it)", xid1, r.Snapshot[:8], a.Snapshot[:8])
	}
	checkLedger(t, r, []int64{id1}, "restore to transaction "+xid1)
	stopServer(t, c.BinDir, r.dir)
	r = p.restore(t, "--to-name", "before b")
	if r.Snapshot != a.Snapshot {
		t.Errorf("--to-name restored base backup %s, want %s", r.Snapshot[:8], a.Snapshot[:8])
	}
	checkLedger(t, r, []int64{id1}, "restore to the restore point")
	stopServer(t, c.BinDir, r.dir)

	// pg status ends the window at the last commit, not at the archive
	// time of the last segment.
	st := p.status(t)
	wins, _ := st["windows"].([]any)
	if len(wins) != 1 {
		t.Fatalf("pg status: %d windows, want 1: %v", len(wins), st["windows"])
	}
	lastTx, _ := wins[0].(map[string]any)["last_transaction"].(map[string]any)
	end, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(lastTx["time"]))
	if d := end.Sub(at4); d < 0 || d > time.Second {
		t.Errorf("the window ends at %v, the last commit was at %s", lastTx, rfc3339(at4))
	}

	// Between the last commit and the archive time of the last segment:
	// recovery could never stop there.
	p.refused(t, "a time after the last commit", []string{"--to-time", rfc3339(at4.Add(500 * time.Millisecond))},
		"is not before the last transaction in the archived WAL", "--to-latest")
	// A position in the unused rest of the last archived segment (closed
	// by pg_switch_wal): no record begins there, recovery never gets there.
	lastSeg, err := pgmeta.ParseSegment(last, pgmeta.DefaultSegmentSize)
	if err != nil {
		t.Fatal(err)
	}
	tail := lastSeg.StartLSN(pgmeta.DefaultSegmentSize) + pg.LSN(pgmeta.DefaultSegmentSize) - 8
	p.refused(t, "an LSN after the last record", []string{"--to-lsn", tail.String()}, "is after the last record in the WAL archived")
	// Between two commits after b: fine.
	r = p.restore(t, "--to-time", rfc3339(at3.Add(100*time.Millisecond)))
	checkLedger(t, r, []int64{id1, id2, id3}, "restore between the last two commits")
	stopServer(t, c.BinDir, r.dir)

	// --from a, with a segment a needs missing: refused, although b, which
	// CheckTarget would choose, does not need it.
	if err := os.Remove(filepath.Join(p.repo, "wal", gapSeg)); err != nil {
		t.Fatal(err)
	}
	p.refused(t, "--from a backup whose WAL has a gap", []string{"--from", a.Snapshot[:8], "--to-time", rfc3339(at3.Add(100 * time.Millisecond))},
		gapSeg, "missing")
	p.refused(t, "--from a backup whose WAL has a gap, to latest", []string{"--from", a.Snapshot[:8], "--to-latest"}, gapSeg)
	_ = id4
}

// TestPGStatusAfterFork: after a restore promoted a copy onto timeline 2
// while the original server went on on timeline 1, pg status lists a
// window on each timeline. The restore's server log is kept next to the
// data directory, not in it; a log an earlier version left inside is not
// backed up, and its lines are not reported as the next recovery's.
func TestPGStatusAfterFork(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Exec(t, ledgerTable)
	a := p.backup(t, c)
	idA, _, _ := insertRow(t, c)
	switchAndWait(t, c)

	r1 := p.restore(t, "--to-latest")
	if r1.Recovery.Timeline != 2 {
		t.Fatalf("promoted onto timeline %d, want 2", r1.Recovery.Timeline)
	}
	if _, err := os.Stat(filepath.Join(r1.dir, "log", "nestguard-restore.log")); err == nil {
		t.Error("pg restore --start wrote its server log into the data directory")
	}
	if _, err := os.Stat(r1.dir + ".nestguard-restore.log"); err != nil {
		t.Errorf("the server log is not next to the data directory: %v", err)
	}
	conn := connect(t, r1.dsn())
	if _, err := conn.Exec(context.Background(), "INSERT INTO ledger (amount) VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	var seg2 string
	if err := conn.QueryRow(context.Background(), "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg2); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(p.repo, "wal", seg2), time.Minute)
	waitFile(t, filepath.Join(p.repo, "wal", "00000002.history"), time.Minute)
	// The original goes on on timeline 1 (a second later: timeline 2's
	// beginning is known to the second).
	time.Sleep(1100 * time.Millisecond)
	idB, _, _ := insertRow(t, c)
	seg1 := switchAndWait(t, c)

	// "latest" would follow timeline 2 by its number although timeline 1
	// went on after it (found by a hostile test: the restore followed a
	// test restore's timeline and lacked production's newer rows): the
	// user says which.
	p.refused(t, "latest after a fork both sides went on from", []string{"--to-latest"}, seg1, "--timeline 1", "--timeline 2")

	st := p.status(t)
	ends := map[string]string{}
	wins, _ := st["windows"].([]any)
	for _, w := range wins {
		m, _ := w.(map[string]any)
		ends[fmt.Sprint(m["timeline"])] = fmt.Sprint(m["last_wal"])
		if m["base_backup"] != a.Snapshot[:8] {
			t.Errorf("window from base backup %v, want %s", m["base_backup"], a.Snapshot[:8])
		}
	}
	if len(wins) != 2 || ends["1"] != seg1 || ends["2"] < seg2 {
		t.Errorf("pg status windows after the fork: %v (want timeline 1 through %s, timeline 2 through %s)", st["windows"], seg1, seg2)
	}
	t.Logf("%s", p.must("pg", "status"))

	// A log an earlier nestguard left inside the data directory, with a
	// recovery line of its own.
	old := filepath.Join(r1.dir, "log", "nestguard-restore.log")
	if err := os.MkdirAll(filepath.Dir(old), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, []byte("LOG:  recovery stopping before commit of transaction 4242, time 2020-01-01 00:00:00+00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, filepath.Dir(old))
	b := p.must("pg", "backup", "--pgdata", r1.dir, "--dsn", r1.dsn(), "--json")
	var br backupResult
	if err := json.Unmarshal([]byte(b), &br); err != nil {
		t.Fatal(err)
	}
	r2 := p.restore(t, "--from", br.Snapshot[:8], "--to-latest")
	if strings.Contains(r2.Recovery.Message, "4242") {
		t.Errorf("the recovery reports an earlier restore's line: %s", r2.Recovery.Message)
	}
	if _, err := os.Stat(filepath.Join(r2.dir, "log", "nestguard-restore.log")); err == nil {
		t.Error("the base backup copied an earlier restore's log")
	}

	// Timeline 1 by name, from the first base backup: its rows after the
	// fork, not timeline 2's.
	r0 := p.restore(t, "--from", a.Snapshot[:8], "--to-latest", "--timeline", "1")
	checkLedger(t, r0, []int64{idA, idB}, "timeline 1 after the fork")
}

// TestPGRestoreDamagedWAL: a WAL segment that fails authentication stops
// a recovery to the latest WAL instead of ending it there. restore-wal
// exits 200 for it, PostgreSQL then stops the recovery (FATAL) rather
// than take the segment for the end of the archive and promote a server
// without the commits after it, and pg restore fails. Found by a hostile
// test: the restore promoted at the damaged segment and exited 0.
func TestPGRestoreDamagedWAL(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Exec(t, ledgerTable)
	p.backup(t, c)
	insertRow(t, c)
	damaged := switchAndWait(t, c)
	insertRow(t, c)
	switchAndWait(t, c)

	flipByte(t, filepath.Join(p.repo, "wal", damaged))

	dir := filepath.Join(p.dir, "damaged")
	res := p.run("--key-file", p.keyFile, "pg", "restore", "--target-dir", dir, "--start",
		"--port", strconv.Itoa(pgtest.FreePort(t)), "--to-latest", "--target-action", "promote")
	stopAtEnd(t, p.c.BinDir, dir)
	t.Logf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	if res.code == 0 {
		t.Errorf("pg restore --to-latest over a damaged segment exited 0")
	}
	if _, err := os.Stat(filepath.Join(dir, "recovery.signal")); err != nil {
		t.Errorf("the restored server left recovery (promoted?): %v", err)
	}

	// restore-wal itself: 200 for the damaged segment, 1 for one that is
	// not there, and 1 for the damaged one on a standby, whose server
	// retries instead of ending its recovery.
	walDir := filepath.Join(p.dir, "walcall", "pg_wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, filepath.Dir(walDir), walDir)
	dest := filepath.Join(walDir, "RECOVERYXLOG")
	call := func(name string) result {
		return p.run("--key-file", p.keyFile, "pg", "restore-wal", "--prefetch", "0", name, dest)
	}
	if r := call(damaged); r.code != 200 || !strings.Contains(r.stderr, damaged) {
		t.Errorf("restore-wal of the damaged segment: exit %d, want 200 naming it\n%s", r.code, r.stderr)
	}
	if r := call("0000000100000000000000FE"); r.code != 1 {
		t.Errorf("restore-wal of a segment not archived: exit %d, want 1\n%s", r.code, r.stderr)
	}
	if err := os.WriteFile(filepath.Join(p.dir, "walcall", "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := call(damaged); r.code != 1 {
		t.Errorf("restore-wal of the damaged segment for a standby: exit %d, want 1\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Error("restore-wal wrote the damaged segment")
	}
	// A damaged history file stops a standby too: exit 1 would read as
	// "no such timeline", and the standby would stay on the timeline its
	// primary left (hostile test).
	hist := filepath.Join(p.dir, "walcall", "00000007.history")
	if err := os.WriteFile(hist, []byte("1\t0/3000000\tno recovery target specified\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := p.run("--key-file", p.keyFile, "pg", "archive-wal", hist); r.code != 0 {
		t.Fatalf("archiving a history file: exit %d\n%s", r.code, r.stderr)
	}
	flipByte(t, filepath.Join(p.repo, "wal", "00000007.history"))
	if r := call("00000007.history"); r.code != 200 || !strings.Contains(r.stderr, "00000007.history") {
		t.Errorf("restore-wal of a damaged history file for a standby: exit %d, want 200 naming it\n%s", r.code, r.stderr)
	}
	if r := call("00000008.history"); r.code != 1 {
		t.Errorf("restore-wal of a history file not archived, for a standby: exit %d, want 1\n%s", r.code, r.stderr)
	}
	// Nor a key file that is not there, or a destination directory that
	// is not (both are "no such file" too, but not the archive's).
	if err := os.Remove(filepath.Join(p.dir, "walcall", "standby.signal")); err != nil {
		t.Fatal(err)
	}
	if r := p.run("--key-file", p.keyFile+".gone", "pg", "restore-wal", "--prefetch", "0", "0000000100000000000000FE", dest); r.code != 200 {
		t.Errorf("restore-wal with a missing key file: exit %d, want 200\n%s", r.code, r.stderr)
	}
	if r := p.run("--key-file", p.keyFile, "pg", "restore-wal", "--prefetch", "0", damaged[:8]+"0000000000000002", filepath.Join(p.dir, "nowhere", "pg_wal", "RECOVERYXLOG")); r.code != 200 {
		t.Errorf("restore-wal into a missing directory: exit %d, want 200\n%s", r.code, r.stderr)
	}
	// A restore_command with a bad flag must not look like the end of
	// the archive either.
	if r := p.run("--key-file", p.keyFile, "pg", "restore-wal", "--prefech", "0", damaged, dest); r.code != 200 {
		t.Errorf("restore-wal with a bad flag: exit %d, want 200\n%s", r.code, r.stderr)
	}
}

// TestPGRestoreArchiveModeOff: a copy restored with --archive-mode off
// and promoted writes nothing into the repository (no history file, no
// WAL of its new timeline), so a drill's copy leaves production's
// "latest" alone; pg status still shows one timeline.
func TestPGRestoreArchiveModeOff(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Exec(t, ledgerTable)
	p.backup(t, c)
	insertRow(t, c)
	switchAndWait(t, c)

	r := p.restore(t, "--to-latest", "--archive-mode", "off")
	if r.Settings["archive_mode"] != "off" {
		t.Errorf("archive_mode written: %q", r.Settings["archive_mode"])
	}
	conn := connect(t, r.dsn())
	var mode, seg string
	if err := conn.QueryRow(context.Background(), "SHOW archive_mode").Scan(&mode); err != nil || mode != "off" {
		t.Errorf("the restored server's archive_mode: %q, %v", mode, err)
	}
	if _, err := conn.Exec(context.Background(), "INSERT INTO ledger (amount) VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(context.Background(), "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // what an archiver would have stored by now
	for _, name := range []string{"00000002.history", seg} {
		if _, err := os.Stat(filepath.Join(p.repo, "wal", name)); err == nil {
			t.Errorf("the copy restored with --archive-mode off archived %s", name)
		}
	}
	if res := p.run("--key-file", p.keyFile, "pg", "restore", "--target-dir", filepath.Join(p.dir, "x"), "--to-latest", "--archive-mode", "maybe"); res.code != 2 {
		t.Errorf("--archive-mode maybe: exit %d, want 2\n%s", res.code, res.stderr)
	}
}
