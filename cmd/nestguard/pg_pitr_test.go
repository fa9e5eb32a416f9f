package main

// End-to-end tests of base backups and point-in-time recovery: the binary
// against real PostgreSQL clusters archiving into nestguard (issue 3).

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/pgtest"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// pitrEnv is a cluster archiving its WAL into a repository through
// 'nestguard pg archive-wal', with nestguard running as PostgreSQL's user.
type pitrEnv struct {
	*pgEnv
	c        *pgtest.Cluster
	restores int
}

func newPITREnv(t *testing.T, o pgtest.Options) *pitrEnv {
	t.Helper()
	pe := newPGEnv(t)
	o.ArchiveCommand = pe.archiveCommand("key")
	return &pitrEnv{pgEnv: pe, c: pgtest.Start(t, o)}
}

// backupResult is what 'pg backup --json' prints.
type backupResult struct {
	Snapshot string           `json:"snapshot"`
	Summary  snapshot.Summary `json:"summary"`
	Backup   pg.BackupInfo    `json:"backup"`
	Seconds  float64          `json:"duration_seconds"`
	MiBps    float64          `json:"read_mib_per_second"`
}

func (p *pitrEnv) backup(t *testing.T, c *pgtest.Cluster, flags ...string) backupResult {
	t.Helper()
	out := p.must(append([]string{"pg", "backup", "--pgdata", c.DataDir, "--dsn", c.DSN(), "--json"}, flags...)...)
	checkJSON(t, "pg backup", out, "json_version snapshot short_id summary backup duration_seconds read_mib_per_second")
	var b backupResult
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("pg backup --json: %v\n%s", err, out)
	}
	return b
}

// restored is a cluster 'pg restore --start' brought up.
type restored struct {
	pg.RestoreResult
	dir  string
	port int
}

func (r *restored) dsn() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", r.Recovery.SocketDir, r.port)
}

// restore runs 'pg restore --start' into a new directory; the server is
// stopped when the test ends.
func (p *pitrEnv) restore(t *testing.T, args ...string) *restored {
	t.Helper()
	p.restores++
	r := &restored{dir: filepath.Join(p.dir, fmt.Sprintf("restore%d", p.restores)), port: pgtest.FreePort(t)}
	stopAtEnd(t, p.c.BinDir, r.dir)
	out := p.must(append([]string{"--key-file", p.keyFile, "pg", "restore", "--target-dir", r.dir, "--start",
		"--port", strconv.Itoa(r.port), "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &r.RestoreResult); err != nil {
		t.Fatalf("pg restore --json: %v\n%s", err, out)
	}
	// Some fields are there only when they apply (docs/json.md).
	checkJSON(t, "pg restore", out, "json_version snapshot base_backup target_dir files bytes recovery_settings started seconds"+
		" damaged? tablespaces? owner? recovery? standby?")
	if !r.Started || r.Recovery == nil {
		t.Fatalf("pg restore --start did not start the server:\n%s", out)
	}
	return r
}

// stopAtEnd stops a server nestguard started in dataDir when the test ends.
func stopAtEnd(t *testing.T, bin, dataDir string) {
	t.Cleanup(func() { stopServer(t, bin, dataDir) })
}

func stopServer(t *testing.T, bin, dataDir string) { pgtest.StopServer(t, bin, dataDir, "fast") }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryIDs(t *testing.T, conn *pgx.Conn, sql string, args ...any) []int64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// ledger commits one row per transaction at random intervals and records
// each row's id and time (clock_timestamp() inside the transaction: just
// before its commit).
type ledger struct {
	mu   sync.Mutex
	rows []ledgerRow
	stop context.CancelFunc
	done chan error
}

type ledgerRow struct {
	id int64
	at time.Time
}

const ledgerTable = `CREATE TABLE ledger (id bigserial PRIMARY KEY, xid bigint DEFAULT txid_current(),
	committed_at timestamptz DEFAULT clock_timestamp(), amount numeric)`

func startLedger(t *testing.T, dsn string, seed uint64) *ledger {
	t.Helper()
	conn := connect(t, dsn)
	// stop ends the loop between inserts only. Cancelling an insert in
	// flight would let the server commit a row the writer never recorded,
	// possibly after the test's last WAL switch.
	stop, cancel := context.WithCancel(context.Background())
	l := &ledger{stop: cancel, done: make(chan error, 1)}
	rng := rand.New(rand.NewPCG(seed, 7))
	go func() {
		var err error
		for stop.Err() == nil {
			var r ledgerRow
			ctx, done := context.WithTimeout(context.Background(), time.Minute)
			err = conn.QueryRow(ctx, "INSERT INTO ledger (amount) VALUES ($1) RETURNING id, committed_at", rng.IntN(10000)).Scan(&r.id, &r.at)
			done()
			if err != nil {
				break
			}
			l.mu.Lock()
			l.rows = append(l.rows, r)
			l.mu.Unlock()
			select {
			case <-stop.Done():
			case <-time.After(time.Duration(20+rng.IntN(180)) * time.Millisecond):
			}
		}
		l.done <- err
	}()
	return l
}

// finish stops the writer and returns the rows it committed.
func (l *ledger) finish(t *testing.T) []ledgerRow {
	t.Helper()
	l.stop()
	if err := <-l.done; err != nil {
		t.Fatalf("ledger writer: %v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.rows)
}

// pitrTarget is a recovery target time between two commits, and the rows
// committed by then.
type pitrTarget struct {
	at   time.Time
	want []int64
}

// pickTargets chooses n targets after from, each in a gap of more than
// 100 ms between two consecutive commits, both before until: recovery
// stops at the first commit after the target, so that commit's WAL is
// needed too. A row's time is its INSERT's clock_timestamp(), taken before
// its commit record; under load the commit can come tens of milliseconds
// later, so a target in the middle of the gap could fall before it. The
// writer is one connection that waits at least 20 ms after each commit
// returns, so row i committed at least 20 ms before row i+1's time, and
// row i+1 commits after its time: 10 ms before row i+1's time is always
// between the two commits, whatever the load.
func pickTargets(rows []ledgerRow, from, until time.Time, n int, rng *rand.Rand) []pitrTarget {
	at := func(i int) time.Time { return rows[i+1].at.Add(-10 * time.Millisecond) }
	var cands []int
	for i := 0; i+1 < len(rows); i++ {
		gap := rows[i+1].at.Sub(rows[i].at)
		if gap > 100*time.Millisecond && at(i).After(from.Add(50*time.Millisecond)) && rows[i+1].at.Before(until) {
			cands = append(cands, i)
		}
	}
	rng.Shuffle(len(cands), func(a, b int) { cands[a], cands[b] = cands[b], cands[a] })
	var out []pitrTarget
	for _, i := range cands[:min(n, len(cands))] {
		tg := pitrTarget{at: at(i)}
		for _, r := range rows[:i+1] {
			tg.want = append(tg.want, r.id)
		}
		out = append(out, tg)
	}
	return out
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// pgbenchLoad runs pgbench against c in the background until stopped.
func pgbenchLoad(t *testing.T, c *pgtest.Cluster, seconds int) func() {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.BinDir, "pgbench"), "-h", c.SocketDir, "-p", strconv.Itoa(c.Port), "-U", "postgres",
		"-n", "-c", "2", "-T", strconv.Itoa(seconds), "postgres")
	pgtest.AsPostgres(t, cmd)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := cmd.Wait(); err != nil {
			t.Errorf("pgbench: %v\n%s", err, out.String())
		}
	}
}

// switchAndWait closes the current WAL segment and waits until it is
// archived into the repository.
func switchAndWait(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	c.Exec(t, "SELECT txid_current()") // something to switch away from
	seg := c.SwitchWAL(t)
	c.WaitArchived(t, seg, time.Minute)
	return seg
}

// checkLedger compares the restored ledger with the rows wanted.
func checkLedger(t *testing.T, r *restored, want []int64, what string) {
	t.Helper()
	got := queryIDs(t, connect(t, r.dsn()), "SELECT id FROM ledger ORDER BY id")
	if !slices.Equal(got, want) {
		t.Errorf("%s: restored ledger has %d rows (ids %s), want %d (ids %s)", what, len(got), idRange(got), len(want), idRange(want))
	}
}

func idRange(ids []int64) string {
	if len(ids) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d..%d", ids[0], ids[len(ids)-1])
}

// dump is pg_dump of a database without the sequences' positions, which
// recovery moves ahead (PostgreSQL logs sequences 32 values in advance),
// and without the random \restrict keys of recent pg_dump versions.
func dump(t *testing.T, c *pgtest.Cluster, host string, port int) string {
	t.Helper()
	out := c.Run(t, "pg_dump", "-h", host, "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres")
	var keep []string
	for l := range strings.SplitSeq(out, "\n") {
		if !strings.HasPrefix(l, "SELECT pg_catalog.setval(") && !strings.HasPrefix(l, `\restrict `) && !strings.HasPrefix(l, `\unrestrict `) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// firstDiff describes the first line where a and b differ.
func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d: source %q, restored %q", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("%d lines in the source, %d restored", len(la), len(lb))
}

// TestPGPITR: a base backup under a pgbench load while a ledger commits
// before, during and after it; restores to random times between the
// backup's end and the last commit contain exactly the rows committed by
// then; a restore to the latest WAL equals the source (pg_dump) and passes
// amcheck.
func TestPGPITR(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{Checksums: true})
	c := p.c
	c.Pgbench(t, "-i", "-q", "-s", "2")
	c.Exec(t, "CREATE EXTENSION amcheck")
	c.Exec(t, ledgerTable)
	l := startLedger(t, c.DSN(), 1)
	time.Sleep(time.Second)

	stopLoad := pgbenchLoad(t, c, 6)
	b := p.backup(t, c)
	t.Logf("base backup under load: %d MiB in %.2fs, %.1f MiB/s read; stored %d KiB", b.Backup.DatabaseSize>>20, b.Seconds, b.MiBps,
		b.Summary.DataStored>>10)
	for range 4 {
		time.Sleep(700 * time.Millisecond)
		switchAndWait(t, c)
	}
	stopLoad()
	rows := l.finish(t)
	last := switchAndWait(t, c)
	t.Logf("ledger: %d rows; WAL archived through %s", len(rows), last)

	// pg_dump of the source at the end of the archived WAL.
	srcDump := dump(t, c, c.SocketDir, c.Port)

	rng := rand.New(rand.NewPCG(2, 2))
	targets := pickTargets(rows, b.Backup.StopTime, rows[len(rows)-1].at.Add(time.Millisecond), 3, rng)
	if len(targets) < 2 {
		t.Fatalf("only %d usable targets among %d ledger rows", len(targets), len(rows))
	}
	src := connect(t, c.DSN())
	for _, tg := range targets {
		// Paused, not promoted: a promoted cluster would archive a new
		// timeline into the repository, which later restores would follow.
		if ids := queryIDs(t, src, "SELECT id FROM ledger WHERE committed_at <= $1 ORDER BY id", tg.at); !slices.Equal(ids, tg.want) {
			t.Fatalf("source ledger up to %s: %s, recorded %s", rfc3339(tg.at), idRange(ids), idRange(tg.want))
		}
		r := p.restore(t, "--to-time", rfc3339(tg.at), "--target-action", "pause")
		checkLedger(t, r, tg.want, "restore to "+rfc3339(tg.at))
		if r.Recovery.State != "paused" {
			t.Errorf("recovery state %q, want paused", r.Recovery.State)
		}
		if lc := r.Recovery.LastCommit; lc == nil || lc.After(tg.at) {
			t.Errorf("reported last commit %v after the target %s", lc, rfc3339(tg.at))
		}
		t.Logf("restore to %s: restore %.2fs, replay %.2fs, total %.2fs; %s", rfc3339(tg.at),
			r.Seconds["restore"], r.Seconds["replay"], r.Seconds["total"], r.Recovery.Message)
		stopServer(t, c.BinDir, r.dir)
	}

	r := p.restore(t, "--to-latest")
	if r.Recovery.State != "promoted" {
		t.Errorf("--to-latest ended %q", r.Recovery.State)
	}
	t.Logf("restore to latest: restore %.2fs, replay %.2fs, total %.2fs", r.Seconds["restore"], r.Seconds["replay"], r.Seconds["total"])
	if got := dump(t, c, r.Recovery.SocketDir, r.port); got != srcDump {
		t.Errorf("pg_dump of the restored cluster differs from the source's: %s", firstDiff(srcDump, got))
	}
	c.Run(t, "pg_amcheck", "-h", r.Recovery.SocketDir, "-p", strconv.Itoa(r.port), "-U", "postgres", "-d", "postgres", "--heapallindexed")
}

// TestPGPITRTimelines: restore to T1 and promote (timeline 2, archiving
// into the same repository), write more, then restore to a point on
// timeline 2.
func TestPGPITRTimelines(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	t1 := p.ledgerTarget(t, 3, 4)
	r1 := p.restore(t, "--to-time", rfc3339(t1[0].at), "--target-action", "promote")
	if r1.Recovery.Timeline != 2 {
		t.Fatalf("promoted onto timeline %d, want 2", r1.Recovery.Timeline)
	}
	checkLedger(t, r1, t1[0].want, "timeline 1 target")
	checkFastRecovery(t, r1)

	// Timeline 2 takes writes and archives them into the same repository.
	l2 := startLedger(t, r1.dsn(), 5)
	time.Sleep(2 * time.Second)
	rows2 := l2.finish(t)
	conn := connect(t, r1.dsn())
	var seg string
	if err := conn.QueryRow(context.Background(), "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(seg, "00000002") {
		t.Fatalf("timeline 2 switched segment %s", seg)
	}
	waitFile(t, filepath.Join(p.repo, "wal", seg), time.Minute)
	waitFile(t, filepath.Join(p.repo, "wal", "00000002.history"), time.Minute)
	stopServer(t, c.BinDir, r1.dir)

	t2 := pickTargets(rows2, rows2[0].at, rows2[len(rows2)-1].at.Add(time.Millisecond), 1, rand.New(rand.NewPCG(6, 6)))
	if len(t2) == 0 {
		t.Fatal("no target on timeline 2")
	}
	r2 := p.restore(t, "--to-time", rfc3339(t2[0].at), "--timeline", "latest")
	checkLedger(t, r2, append(slices.Clone(t1[0].want), t2[0].want...), "timeline 2 target")
	t.Logf("restore along timeline 2: restore %.2fs, replay %.2fs; %s", r2.Seconds["restore"], r2.Seconds["replay"], r2.Recovery.Message)

	var tls []any
	st := p.status(t)
	tls, _ = st["timelines"].([]any)
	if len(tls) != 2 {
		t.Errorf("pg status shows %d timelines, want 2", len(tls))
	}
}

// checkFastRecovery: a restore with --start and a target promoted fast
// (paused at the target, then promoted: no end-of-recovery checkpoint
// before the server opened), the shell took the segments the restore fed
// into the spool, and the spool is gone.
func checkFastRecovery(t *testing.T, r *restored) {
	t.Helper()
	if rc := r.Settings["restore_command"]; !strings.HasPrefix(rc, "f=pg_wal/.nestguard-spool/%f; ") {
		t.Errorf("restore_command without the spool's fast path: %s", rc)
	}
	if a := r.Settings["recovery_target_action"]; a != "promote" {
		t.Errorf("recovery_target_action %q written, want promote (the pause is the start's alone)", a)
	}
	log, err := os.ReadFile(pg.DefaultLogFile(r.dir))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "received promote request") || strings.Contains(string(log), "end-of-recovery immediate") {
		t.Errorf("not a fast promotion; server log:\n%s", log)
	}
	if served := strings.Count(string(log), "restored log file"); served == 0 {
		t.Errorf("no segment restored; server log:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "pg_wal", ".nestguard-spool")); err == nil {
		t.Error("the WAL spool is left after the restore")
	}
}

// ledgerTarget commits ledger rows (seed picks their pace) before,
// during and for two seconds after a base backup of p's cluster, archives
// them, and picks one target after the backup (pick seeds the choice).
func (p *pitrEnv) ledgerTarget(t *testing.T, seed, pick uint64) []pitrTarget {
	t.Helper()
	c := p.c
	c.Exec(t, ledgerTable)
	l := startLedger(t, c.DSN(), seed)
	time.Sleep(500 * time.Millisecond)
	b := p.backup(t, c)
	time.Sleep(2 * time.Second)
	rows := l.finish(t)
	switchAndWait(t, c)
	tg := pickTargets(rows, b.Backup.StopTime, rows[len(rows)-1].at.Add(time.Millisecond), 1, rand.New(rand.NewPCG(pick, pick)))
	if len(tg) == 0 {
		t.Fatal("no target after the base backup")
	}
	return tg
}

func waitFile(t *testing.T, p string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", p, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPGPITRMissingWAL: with one archived segment deleted, a restore to a
// time beyond it fails before writing anything, naming the segment; a
// restore to a time before it works.
func TestPGPITRMissingWAL(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Exec(t, ledgerTable)
	l := startLedger(t, c.DSN(), 8)
	b := p.backup(t, c)
	type switched struct {
		seg string
		at  time.Time
	}
	var segs []switched
	for range 5 {
		time.Sleep(600 * time.Millisecond)
		before := time.Now()
		segs = append(segs, switched{switchAndWait(t, c), before})
	}
	time.Sleep(1500 * time.Millisecond) // commits beyond the last switched segment
	rows := l.finish(t)
	switchAndWait(t, c)

	missing := segs[3]
	if err := os.Remove(filepath.Join(p.repo, "wal", missing.seg)); err != nil {
		t.Fatal(err)
	}
	// Before: every commit up to the target is in segments archived
	// before the missing one; beyond: commits after the missing segment.
	before := pickTargets(rows, b.Backup.StopTime, segs[2].at.Add(-100*time.Millisecond), 1, rand.New(rand.NewPCG(9, 9)))
	beyond := pickTargets(rows, segs[4].at, rows[len(rows)-1].at.Add(time.Millisecond), 1, rand.New(rand.NewPCG(10, 10)))
	if len(before) == 0 || len(beyond) == 0 {
		t.Fatalf("targets: %d before, %d beyond the missing segment", len(before), len(beyond))
	}
	dir := filepath.Join(p.dir, "refused")
	res := p.run("--key-file", p.keyFile, "pg", "restore", "--target-dir", dir, "--to-time", rfc3339(beyond[0].at))
	if res.code != 1 || !strings.Contains(res.stderr, missing.seg) || !strings.Contains(res.stderr, "missing") {
		t.Errorf("restore beyond a missing segment: exit %d\n%s", res.code, res.stderr)
	}
	t.Logf("refused: %s", strings.TrimSpace(res.stderr))
	if _, err := os.Stat(dir); err == nil {
		t.Error("the refused restore created its target directory")
	}
	r := p.restore(t, "--to-time", rfc3339(before[0].at))
	checkLedger(t, r, before[0].want, "restore before the missing segment")
}

// TestPGBackupIncremental: a second base backup after 1% of the pages of
// pgbench_accounts changed stores a small fraction of the database.
func TestPGBackupIncremental(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Pgbench(t, "-i", "-q", "-s", "3")
	c.Exec(t, "VACUUM (FREEZE, ANALYZE)")
	c.Exec(t, "CHECKPOINT")
	first := p.backup(t, c)
	// One row on each of a random 1% of the table's pages: 1% of pages
	// changed, spread over the whole table.
	c.Exec(t, `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE ctid = ANY (ARRAY(
		SELECT format('(%s,1)', p)::tid FROM generate_series(0, pg_relation_size('pgbench_accounts') / 8192 - 1) p
		WHERE random() < 0.01))`)
	c.Exec(t, "CHECKPOINT")
	// The second backup under a data class (docs/retention.md).
	cfg := filepath.Join(p.dir, "nestguard.toml")
	writeFile(t, cfg, "[class.financial-records]\nfloor = \"7y\"\n", 0o644)
	start := time.Now()
	second := p.backup(t, c, "--config", cfg, "--class", "financial-records")
	var list []struct {
		ID        string    `json:"id"`
		Class     string    `json:"class"`
		KeepUntil time.Time `json:"keep_until"`
	}
	if err := json.Unmarshal([]byte(p.must("snapshots", "--json")), &list); err != nil || len(list) != 2 {
		t.Fatalf("snapshots --json: %v %+v", err, list)
	}
	if l := list[1]; l.ID != second.Snapshot || l.Class != "financial-records" || l.KeepUntil.Before(start.AddDate(7, 0, -1)) || l.KeepUntil.After(time.Now().AddDate(7, 0, 1)) {
		t.Errorf("pg backup --class: snapshot %+v", l)
	}
	if list[0].Class != "" || !list[0].KeepUntil.IsZero() {
		t.Errorf("backup without a class: %+v", list[0])
	}
	size := second.Backup.DatabaseSize
	added, stored := second.Summary.DataAdded, second.Summary.DataStored
	t.Logf("database %.1f MiB; first backup %.2fs (%.1f MiB/s), stored %.1f MiB; second backup %.2fs: read %.1f MiB, added %.2f%%, stored %.2f%% (%d KiB)",
		float64(size)/(1<<20), first.Seconds, first.MiBps, float64(first.Summary.DataStored)/(1<<20), second.Seconds,
		float64(second.Summary.BytesRead)/(1<<20), 100*float64(added)/float64(size), 100*float64(stored)/float64(size), stored>>10)
	if stored > size/10 || added > size/10 {
		t.Errorf("second backup after 1%% of pages changed: added %d, stored %d bytes of a %d byte database", added, stored, size)
	}
	if second.Summary.FilesUnmodified == 0 {
		t.Error("second backup read every file again")
	}
}

// TestPGBackupCorruptPage: a page whose checksum fails is reported by
// relation file and block, the backup is saved, and the exit code is 3.
func TestPGBackupCorruptPage(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{Checksums: true, Settings: map[string]string{"autovacuum": "off"}})
	c := p.c
	c.Exec(t, "CREATE TABLE victim (id int, v text)")
	c.Exec(t, "INSERT INTO victim SELECT g, repeat('v', 100) FROM generate_series(1, 2000) g")
	c.Exec(t, "CHECKPOINT")
	rel := c.QueryString(t, "SELECT pg_relation_filepath('victim')")
	c.Stop(t)
	f, err := os.OpenFile(filepath.Join(c.DataDir, rel), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	off := int64(3*8192 + 6000)
	f.ReadAt(one[:], off)
	one[0] ^= 0x10
	if _, err := f.WriteAt(one[:], off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	c2 := pgtest.StartExisting(t, c.DataDir, pgtest.Options{})
	res := p.run("pg", "backup", "--pgdata", c2.DataDir, "--dsn", c2.DSN())
	if res.code != 3 {
		t.Fatalf("backup of a corrupt cluster: exit %d, want 3\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "corrupt page: "+rel+" block 3:") {
		t.Errorf("the corrupt page is not named (%s block 3):\n%s", rel, res.stderr)
	}
	if !strings.Contains(res.stdout, "snapshot ") {
		t.Errorf("no snapshot saved:\n%s", res.stdout)
	}
	var snaps []map[string]any
	if err := json.Unmarshal([]byte(p.must("snapshots", "--json")), &snaps); err != nil || len(snaps) != 1 {
		t.Errorf("snapshots after the backup: %d, %v", len(snaps), err)
	}
}

func TestParseTargetTime(t *testing.T) {
	t.Parallel()
	utc := time.Date(2024, 5, 1, 13, 59, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2024-05-01T13:59:00Z":             utc,
		"2024-05-01T15:59:00+02:00":        utc,
		"2024-05-01T13:59:00.123456Z":      utc.Add(123456 * time.Microsecond),
		"2024-05-01 15:59:00+02":           utc,
		"2024-05-01 15:59:00.5+02":         utc.Add(500 * time.Millisecond),
		"2024-05-01 13:59:00+00:00":        utc,
		"2024-05-01 11:59:00-0200":         utc,
		" 2024-05-01 13:59:00.000001 +00 ": utc.Add(time.Microsecond),
		"2024-05-01 13:59:00":              time.Date(2024, 5, 1, 13, 59, 0, 0, time.Local),
		"2024-05-01T13:59:00.25":           time.Date(2024, 5, 1, 13, 59, 0, 250_000_000, time.Local),
	} {
		got, err := parseTargetTime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTargetTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2024-05-01", "13:59:00", "2024-13-01 00:00:00"} {
		if _, err := parseTargetTime(bad); err == nil {
			t.Errorf("parseTargetTime(%q) accepted", bad)
		}
	}
}

func TestParseRestoreFlags(t *testing.T) {
	t.Parallel()
	if _, err := parseRestoreTarget("", "", "", "", false); err == nil {
		t.Error("no target accepted")
	}
	if _, err := parseRestoreTarget("", "0/1", "", "", true); err == nil {
		t.Error("two targets accepted")
	}
	if tg, err := parseRestoreTarget("", "16/B374D848", "", "", false); err != nil || tg.LSN == nil || *tg.LSN != 0x16B374D848 {
		t.Errorf("--to-lsn: %+v, %v", tg, err)
	}
	if _, err := parseRestoreTarget("", "", "12x", "", false); err == nil {
		t.Error("non-numeric --to-xid accepted")
	}
	m, err := parseTablespaceFlags([]string{"16390=/srv/ts a", "16391=/x/../y"})
	if err != nil || m[16390] != "/srv/ts a" || m[16391] != "/y" {
		t.Errorf("--tablespace-map: %v, %v", m, err)
	}
	for _, bad := range []string{"16390", "x=/a", "0=/a", "16390=relative", "16390="} {
		if _, err := parseTablespaceFlags([]string{bad}); err == nil {
			t.Errorf("--tablespace-map %q accepted", bad)
		}
	}
	for in, want := range map[string]int{"32768": 32768, "32k": 32 << 10, "16KiB": 16 << 10, "1m": 1 << 20, " 64 KB ": 64 << 10} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "k", "-8k", "8x"} {
		if _, err := parseByteSize(bad); err == nil {
			t.Errorf("parseByteSize(%q) accepted", bad)
		}
	}
}

// The restore_command nestguard writes names the key file, quotes what
// the shell would split, and escapes % for PostgreSQL; it never holds a
// secret.
func TestRestoreCommandLine(t *testing.T) {
	t.Parallel()
	a := newApp(processSystem())
	a.repo = "/srv/back up/100%"
	if _, err := a.restoreCommandLine(""); err == nil || !strings.Contains(err.Error(), "--key-file") {
		t.Errorf("without a key or password file: %v", err)
	}
	a.keyFile = "/etc/nestguard/wal.key"
	a.s3PathStyle = true
	a.s3Profile = "wal-reader"
	a.fipsOnly = false
	cmd, err := a.restoreCommandLine("")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cmd, " --repo '/srv/back up/100%%' --key-file /etc/nestguard/wal.key --s3-path-style --s3-profile wal-reader pg restore-wal %f %p") {
		t.Errorf("restore_command: %s", cmd)
	}
	if cmd, err := a.restoreCommandLine("S3ss10n"); err != nil || !strings.HasSuffix(cmd, " pg restore-wal --spool-session S3ss10n %f %p") {
		t.Errorf("restore_command with a spool session: %s, %v", cmd, err)
	}
	if strings.Contains(cmd, "GODEBUG") {
		t.Errorf("restore_command outside fips140=only: %s", cmd)
	}
	a.fipsOnly = true
	if cmd, err = a.restoreCommandLine(""); err != nil || !strings.HasPrefix(cmd, "GODEBUG=fips140=only /") {
		t.Errorf("restore_command under fips140=only: %s, %v", cmd, err)
	}
	for in, want := range map[string]string{"/usr/bin/ng": "/usr/bin/ng", "a b": "'a b'", "it's": `'it'\''s'`, "": "''", "$HOME": "'$HOME'"} {
		if got := shellWord(in); got != want {
			t.Errorf("shellWord(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestPGRestoreUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	pf := filepath.Join(e.dir, "pass")
	os.WriteFile(pf, []byte(e.pass), 0o600)
	dir := filepath.Join(e.dir, "r")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"pg", "restore", "--to-latest"}, 2, "--target is required"},
		{[]string{"pg", "restore", "--target-dir", dir}, 2, "exactly one"},
		{[]string{"pg", "restore", "--target-dir", dir, "--to-latest", "--to-name", "x"}, 2, "exactly one"},
		{[]string{"pg", "restore", "--target-dir", dir, "--to-time", "noon"}, 2, "--to-time"},
		{[]string{"pg", "restore", "--target-dir", dir, "--to-latest"}, 2, "--password-file"},
		{[]string{"--password-file", pf, "pg", "restore", "--target-dir", dir, "--to-latest", "--target-action", "pause"}, 1, "needs a recovery target"},
		{[]string{"--password-file", pf, "pg", "restore", "--target-dir", dir, "--standby", "--to-latest"}, 2, "--standby takes no recovery target"},
		{[]string{"--password-file", pf, "pg", "restore", "--target-dir", dir, "--standby", "--target-action", "promote"}, 2, "--standby takes no recovery target"},
		{[]string{"--password-file", pf, "pg", "restore", "--target-dir", dir, "--to-latest", "--primary-conninfo", "host=p"}, 2, "--primary-conninfo is for --standby"},
		{[]string{"--password-file", pf, "pg", "restore", "--target-dir", dir, "--standby", "--timeline", "0x0B"}, 2, "--timeline"},
		{[]string{"--password-file", pf, "pg", "restore", "--target-dir", dir, "--standby", "--primary-conninfo", "host=p password=x"}, 2, "holds a password"},
		{[]string{"--password-file", pf, "pg", "restore", "--target-dir", dir, "--to-name", "x"}, 1, "no PostgreSQL base backup"},
		{[]string{"pg", "backup", "--block-size", "12k", "--dsn", "host=/nonexistent"}, 1, "block size"},
		{[]string{"pg", "backup", "--class", "financial-records", "--dsn", "host=/nonexistent"}, 2, `unknown data class "financial-records"`},
	} {
		r := e.run(tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("nestguard %s: exit %d, want %d with %q\n%s", strings.Join(tc.args, " "), r.code, tc.code, tc.msg, r.stderr)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a refused restore created its target directory")
	}
}

// TestPGRestoreStandby: 'pg restore --standby --start' brings up a
// standby of the newest base backup that replays the archive to its end,
// stays in recovery (read only), and goes on replaying what is archived
// after it started: a row committed on the primary later shows on the
// standby without anything done to it. Its timeline is latest (not
// pinned, as a restore to a target's is), so that it would follow the
// primary's promotions.
func TestPGRestoreStandby(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{Settings: map[string]string{"wal_retrieve_retry_interval": "200ms"}})
	c := p.c
	c.Exec(t, "CREATE TABLE acct (id int PRIMARY KEY, note text)")
	c.Exec(t, "INSERT INTO acct SELECT g, 'before' FROM generate_series(1, 100) g")
	p.backup(t, c)
	c.Exec(t, "INSERT INTO acct VALUES (101, 'after the base backup')")
	switchAndWait(t, c)

	r := p.restore(t, "--standby")
	if !r.Standby || r.Recovery.State != "standby" {
		t.Fatalf("restored as a standby: standby %v, state %q", r.Standby, r.Recovery.State)
	}
	if tl := r.Settings["recovery_target_timeline"]; tl != "latest" {
		t.Errorf("a standby's recovery_target_timeline = %q, want latest", tl)
	}
	for _, k := range []string{"recovery_target_action", "recovery_target_time", "recovery_target_lsn"} {
		if v, ok := r.Settings[k]; ok {
			t.Errorf("a standby got %s = %q", k, v)
		}
	}
	if _, err := os.Stat(filepath.Join(r.dir, "standby.signal")); err != nil {
		t.Errorf("no standby.signal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "recovery.signal")); err == nil {
		t.Error("a standby got recovery.signal")
	}
	conn := connect(t, r.dsn())
	ctx := context.Background()
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("the standby is not in recovery: %v, %v", inRecovery, err)
	}
	// It replays on as the primary archives.
	c.Exec(t, "INSERT INTO acct VALUES (102, 'after the standby started')")
	switchAndWait(t, c)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM acct WHERE id IN (101, 102)").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby shows %d of the 2 rows archived after the base backup within 2 minutes", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("the standby left recovery at the end of the archive: %v, %v", inRecovery, err)
	}
	if os.Geteuid() == 0 {
		// restore_command run as the server runs it (as postgres) before
		// the standby starts: a key file only root reads is refused at
		// once, not waited on for --start-timeout (review).
		rootKey := filepath.Join(p.dir, "root-only.key")
		b, err := os.ReadFile(p.keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(rootKey, b, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(p.dir, "standby-nokey")
		stopAtEnd(t, c.BinDir, dir)
		// nestguard itself runs as root here (it reads the key); last in
		// the test, since what it writes in the repository is root's.
		cred := p.cred
		p.cred = nil
		res := p.run("--key-file", rootKey, "pg", "restore", "--target-dir", dir, "--standby", "--start",
			"--port", strconv.Itoa(pgtest.FreePort(t)), "--start-timeout", "10m")
		p.cred = cred
		if res.code == 0 || !strings.Contains(res.stderr, "does not run as the server would") {
			t.Errorf("a standby whose restore_command cannot read the key file: exit %d\n%s", res.code, res.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
			t.Error("the standby was started")
		}
	}
}
