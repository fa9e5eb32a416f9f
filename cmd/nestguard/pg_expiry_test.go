package main

// End-to-end test of PostgreSQL WAL expiry (issue 19): base backups taken
// over time under load, forget with --keep-pitr, prune, then restores.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/pgtest"
)

// runAt runs nestguard in this process (as root, on the repository the
// postgres user writes) with its retention clock at now: the test's
// backups are seconds apart, --keep-pitr counts in hours. The repository
// is given back to postgres afterwards.
func (p *pitrEnv) runAt(t *testing.T, now time.Time, args ...string) result {
	t.Helper()
	env := []string{"NESTGUARD_PASSWORD=" + p.pass}
	r := runSystemWith(os.LookupEnv, env, fastKDF(), append([]string{"--repo", p.repo}, args...), func(s *system) {
		s.now = func() time.Time { return now }
	})
	pgtest.Chown(t, p.repo)
	return r
}

func (p *pitrEnv) mustAt(t *testing.T, now time.Time, args ...string) string {
	t.Helper()
	r := p.runAt(t, now, args...)
	if r.code != 0 {
		t.Fatalf("nestguard %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// pgbenchRate runs pgbench against c at about tps transactions a second
// until the returned function stops it: load without taking the shared
// machine's CPU.
func pgbenchRate(t *testing.T, c *pgtest.Cluster, tps int) func() {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.BinDir, "pgbench"), "-h", c.SocketDir, "-p", strconv.Itoa(c.Port), "-U", "postgres",
		"-n", "-c", "2", "-R", strconv.Itoa(tps), "-T", "600", "postgres")
	pgtest.AsPostgres(t, cmd)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		select {
		case err := <-done:
			t.Errorf("pgbench ended before it was stopped: %v\n%s", err, out.String())
			return
		default:
		}
		cmd.Process.Signal(os.Interrupt)
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// backupArgs is backup with more arguments for pg backup.
func (p *pitrEnv) backupArgs(t *testing.T, c *pgtest.Cluster, args ...string) backupResult {
	t.Helper()
	out := p.must(append([]string{"pg", "backup", "--pgdata", c.DataDir, "--dsn", c.DSN(), "--json"}, args...)...)
	var b backupResult
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("pg backup --json: %v\n%s", err, out)
	}
	return b
}

// walSegments lists the segments under the repository's wal/.
func walSegments(t *testing.T, repo string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(repo, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if pgmeta.IsSegment(e.Name()) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// TestPGExpiry: four base backups b1..b4 under a pgbench load while a
// ledger commits; b1 is tagged monthly. At a clock where --keep-pitr 1h
// reaches back between b3 and b4, pg status and forget --dry-run show b3
// as the window's anchor and b1 as archive-only; forget --keep-last 1
// --keep-tag monthly --keep-pitr 1h keeps b4, b1 and b3 (the anchor) and
// removes b2; prune removes the WAL before b1 and between b1's stop and
// b3's start. Then a restore to a time in the window has exactly the
// rows committed by then, b1 restores to its end with exactly its rows,
// and a restore to a time between b2 and b3 is refused, naming a removed
// segment.
func TestPGExpiry(t *testing.T) {
	t.Parallel()
	skipUnderFIPS(t, "forget and prune run in-process, with a retention clock set by the test")
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Pgbench(t, "-i", "-q", "-s", "1")
	c.Exec(t, ledgerTable)
	stopLoad := pgbenchRate(t, c, 100)
	switchAndWait(t, c) // WAL older than every base backup

	// b1: the ledger is quiet while it runs, so its rows are known exactly.
	l1 := startLedger(t, c.DSN(), 21)
	time.Sleep(time.Second)
	rows1 := l1.finish(t)
	b1 := p.backupArgs(t, c, "--tag", "monthly")
	l2 := startLedger(t, c.DSN(), 22)
	between := func() {
		for range 2 {
			time.Sleep(400 * time.Millisecond)
			switchAndWait(t, c)
		}
	}
	between()
	b2 := p.backupArgs(t, c)
	between()
	b3 := p.backupArgs(t, c)
	between()
	b4 := p.backupArgs(t, c)
	time.Sleep(time.Second)
	stopLoad()
	rows2 := l2.finish(t)
	switchAndWait(t, c)
	for i, b := range []backupResult{b1, b2, b3, b4} {
		t.Logf("b%d %s: WAL %s to %s, %s to %s", i+1, b.Snapshot[:8], b.Backup.StartWAL, b.Backup.StopWAL,
			rfc3339(b.Backup.StartTime), rfc3339(b.Backup.StopTime))
	}
	if !b4.Backup.StopTime.After(b3.Backup.StopTime.Add(500 * time.Millisecond)) {
		t.Fatalf("b3 and b4 ended too close together: %s, %s", rfc3339(b3.Backup.StopTime), rfc3339(b4.Backup.StopTime))
	}
	// The clock at which --keep-pitr 1h reaches back to just after b3's end.
	now := b3.Backup.StopTime.Add(time.Hour + 200*time.Millisecond)
	before := walSegments(t, p.repo)

	// pg status --keep-pitr: b3 anchors the window, b1 and b2 are archive-only.
	var st struct {
		KeepPITR pitrPreview `json:"keep_pitr"`
	}
	out := p.mustAt(t, now, "pg", "status", "--keep-pitr", "1h", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("pg status --keep-pitr --json: %v\n%s", err, out)
	}
	roles := map[string]string{}
	if len(st.KeepPITR.Systems) == 1 {
		for _, b := range st.KeepPITR.Systems[0].Backups {
			roles[b.Snapshot.String()] = b.Role
		}
	}
	wantRoles := map[string]string{b1.Snapshot: "archive-only", b2.Snapshot: "archive-only", b3.Snapshot: "pitr-anchor", b4.Snapshot: "pitr"}
	if fmt.Sprint(roles) != fmt.Sprint(wantRoles) {
		t.Errorf("pg status --keep-pitr 1h: roles %v, want %v", roles, wantRoles)
	}
	if st.KeepPITR.WALFiles == 0 || len(st.KeepPITR.Windows) == 0 {
		t.Errorf("pg status --keep-pitr 1h removes %d WAL files and leaves windows %v", st.KeepPITR.WALFiles, st.KeepPITR.Windows)
	}
	text := p.mustAt(t, now, "pg", "status", "--keep-pitr", "1h")
	for _, want := range []string{"with --keep-pitr 1h", "WAL kept from base backup " + b3.Snapshot[:8], "archive-only: base backup " + b1.Snapshot[:8]} {
		if !strings.Contains(text, want) {
			t.Errorf("pg status --keep-pitr 1h does not say %q:\n%s", want, text)
		}
	}

	// forget --dry-run shows the window before and after; forget keeps
	// the anchor; prune removes the WAL no kept base backup needs.
	policy := []string{"--keep-last", "1", "--keep-tag", "monthly", "--keep-pitr", "1h"}
	dry := p.mustAt(t, now, append([]string{"forget", "--dry-run"}, policy...)...)
	t.Logf("forget --dry-run:\n%s", dry)
	for _, want := range []string{"keep-pitr anchor", "Recoverable window now", "Recoverable window after"} {
		if !strings.Contains(dry, want) {
			t.Errorf("forget --dry-run does not say %q:\n%s", want, dry)
		}
	}
	var dj struct {
		Before []json.RawMessage `json:"pitr_before"`
		After  *pitrPreview      `json:"pitr_after"`
	}
	out = p.mustAt(t, now, append([]string{"forget", "--dry-run", "--json"}, policy...)...)
	if err := json.Unmarshal([]byte(out), &dj); err != nil || len(dj.Before) != 1 || dj.After == nil || len(dj.After.Windows) != 2 {
		t.Errorf("forget --dry-run --json: windows before %d, after %+v (%v)\n%s", len(dj.Before), dj.After, err, out)
	}
	// --prune in the dry run: prune's dry run as if b2 were gone.
	dryPrune := p.mustAt(t, now, append([]string{"forget", "--dry-run", "--prune", "--grace", "0"}, policy...)...)
	p.mustAt(t, now, append([]string{"forget"}, policy...)...)
	pruned := p.mustAt(t, now, "prune", "--grace", "0", "--keep-pitr", "1h")
	for _, want := range []string{"WAL kept from base backup " + b3.Snapshot[:8], "archive-only base backup " + b1.Snapshot[:8] + " keeps its WAL " + b1.Backup.StartWAL} {
		if !strings.Contains(pruned, want) {
			t.Errorf("prune does not say %q:\n%s", want, pruned)
		}
	}

	after := walSegments(t, p.repo)
	start := func(b backupResult) string { return b.Backup.StartWAL[8:] }
	stop := func(b backupResult) string { return b.Backup.StopWAL[8:] }
	for _, s := range before {
		pos := s[8:]
		want := pos >= start(b1) && pos <= stop(b1) || pos >= start(b3)
		if got := slices.Contains(after, s); got != want {
			t.Errorf("WAL segment %s: kept %v, want %v", s, got, want)
		}
	}
	var removed []string
	for _, s := range before {
		if !slices.Contains(after, s) {
			removed = append(removed, s)
		}
	}
	t.Logf("prune removed %d of %d WAL segments", len(removed), len(before))
	// verify reports none of the WAL prune removed on purpose, archived
	// over a minute ago or not: b1 is archive-only, and the gap between
	// its stop and b3's start is what the prune's expiry record accounts
	// for.
	old := time.Now().Add(-2 * time.Minute)
	for _, s := range after {
		if err := os.Chtimes(filepath.Join(p.repo, "wal", s), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if out := p.mustAt(t, now, "verify"); !strings.Contains(out, "no errors found") {
		t.Errorf("verify after forget and prune --keep-pitr:\n%s", out)
	}
	for _, seg := range removed {
		if !strings.Contains(dryPrune, "would remove wal/"+seg) {
			t.Errorf("forget --dry-run --prune does not say it would remove wal/%s:\n%s", seg, dryPrune)
		}
	}
	checkExpiryRecord(t, p, now, b3, removed)

	// A time in the window: exactly the rows committed by then.
	rng := rand.New(rand.NewPCG(23, 23))
	in := pickTargets(rows2, b3.Backup.StopTime, rows2[len(rows2)-1].at.Add(time.Millisecond), 1, rng)
	gone := pickTargets(rows2, b2.Backup.StopTime, b3.Backup.StartTime, 1, rng)
	if len(in) == 0 || len(gone) == 0 {
		t.Fatalf("targets: %d in the window, %d in the removed part", len(in), len(gone))
	}
	ids1 := make([]int64, len(rows1))
	for i, r := range rows1 {
		ids1[i] = r.id
	}
	r := p.restore(t, "--to-time", rfc3339(in[0].at))
	checkLedger(t, r, append(slices.Clone(ids1), in[0].want...), "restore to a time in the window")
	stopServer(t, c.BinDir, r.dir)

	// The archive-only b1 restores to its end.
	r = p.restore(t, "--snapshot", b1.Snapshot, "--to-lsn", b1.Backup.StopLSN.String())
	checkLedger(t, r, ids1, "archive-only base backup restored to its end")
	stopServer(t, c.BinDir, r.dir)

	// A time that forget and prune took out of the window is refused,
	// naming a removed segment, before anything is written.
	dir := filepath.Join(p.dir, "refused")
	res := p.run("--key-file", p.keyFile, "pg", "restore", "--target-dir", dir, "--to-time", rfc3339(gone[0].at))
	named := slices.ContainsFunc(removed, func(s string) bool { return strings.Contains(res.stderr, s) })
	if res.code != 1 || !named || !strings.Contains(res.stderr, "outside the recoverable window") {
		t.Errorf("restore to a time between b2 and b3: exit %d, want 1 naming a removed segment\n%s", res.code, res.stderr)
	}
	t.Logf("refused: %s", strings.TrimSpace(res.stderr))
	if _, err := os.Stat(dir); err == nil {
		t.Error("the refused restore created its target directory")
	}
}

// checkExpiryRecord checks, after TestPGExpiry's prune, the WAL expiry
// record it wrote: the boundary is b3's start (the anchor's), pg status
// shows it, the prune's audit record names it; and, hostile, verify
// with the record deleted by hand or damaged fails, naming it, with the
// WAL it accounted for (removed, in b1's window) reported missing.
func checkExpiryRecord(t *testing.T, p *pitrEnv, now time.Time, b3 backupResult, removed []string) {
	t.Helper()
	recs, err := os.ReadDir(filepath.Join(p.repo, "expiry"))
	if err != nil || len(recs) != 1 {
		t.Fatalf("expiry/ after the prune: %v %v", recs, err)
	}
	rec := filepath.Join(p.repo, "expiry", recs[0].Name())
	var st struct {
		Boundaries []struct {
			System string `json:"system_identifier"`
			From   string `json:"from"`
		} `json:"wal_expiry_boundaries"`
	}
	out := p.mustAt(t, now, "pg", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Boundaries) != 1 || st.Boundaries[0].From != b3.Backup.StartWAL || st.Boundaries[0].System == "" {
		t.Errorf("pg status --json: wal_expiry_boundaries %+v (%v), want from %s", st.Boundaries, err, b3.Backup.StartWAL)
	}
	if text := p.mustAt(t, now, "pg", "status"); !strings.Contains(text, "WAL expiry") || !strings.Contains(text, "before "+b3.Backup.StartWAL) {
		t.Errorf("pg status does not show the WAL expiry boundary %s:\n%s", b3.Backup.StartWAL, text)
	}
	if log := p.mustAt(t, now, "audit", "log", "--json"); !strings.Contains(log, `"expiry/`+recs[0].Name()+`"`) {
		t.Errorf("the audit log does not name the expiry record %s:\n%s", recs[0].Name(), log)
	}

	data, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(rec)
	if err != nil {
		t.Fatal(err)
	}
	// verify fails naming a removed segment and the cause.
	verifyFails := func(what string, says ...string) {
		t.Helper()
		r := p.runAt(t, now, "verify")
		all := r.stdout + r.stderr
		if r.code == 0 || !slices.ContainsFunc(removed, func(s string) bool { return strings.Contains(all, "wal/"+s) }) {
			t.Errorf("verify with the expiry record %s: exit %d, want a removed segment reported\n%s", what, r.code, all)
		}
		for _, w := range says {
			if !strings.Contains(all, w) {
				t.Errorf("verify with the expiry record %s does not say %q:\n%s", what, w, all)
			}
		}
	}
	if err := os.Remove(rec); err != nil {
		t.Fatal(err)
	}
	verifyFails("deleted", "expiry/ was deleted", "run that prune again")
	damaged := slices.Clone(data)
	damaged[len(damaged)/2] ^= 0x10
	if err := os.WriteFile(rec, damaged, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, p.repo)
	verifyFails("damaged", "expiry/"+recs[0].Name(), "which WAL prune removed on purpose is unknown")
	os.Remove(rec)
	if err := os.WriteFile(rec, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, p.repo)
	if out := p.mustAt(t, now, "verify"); !strings.Contains(out, "no errors found") {
		t.Errorf("verify with the expiry record back:\n%s", out)
	}
}
