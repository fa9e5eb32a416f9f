package main

// Hostile tests of 'pg restore --start': the restore's process killed or
// interrupted during replay, the spool's shell fast path given what it
// must not hand over, and the target actions around the fast promotion.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/pgtest"
)

// walHistory is a base backup followed by many WAL segments, a ledger
// committing all along, and a target late in the WAL.
type walHistory struct {
	p      *pitrEnv
	rows   []ledgerRow
	target pitrTarget
	last   string    // the last segment archived
	base   time.Time // the end of the base backup
}

// newWALHistory backs up, then writes about segs segments of bulk WAL
// while the ledger commits, and picks a target in the last quarter of
// the ledger: replay has most segments to go through before it.
func newWALHistory(t *testing.T, segs int) *walHistory {
	t.Helper()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Exec(t, ledgerTable)
	c.Exec(t, "CREATE TABLE filler (id int, pad text)")
	l := startLedger(t, c.DSN(), 11)
	time.Sleep(300 * time.Millisecond)
	b := p.backup(t, c)
	for range segs {
		// About one segment of WAL each.
		c.Exec(t, "INSERT INTO filler SELECT g, repeat('x', 100) FROM generate_series(1, 80000) g")
		c.SwitchWAL(t)
	}
	time.Sleep(time.Second)
	rows := l.finish(t)
	last := switchAndWait(t, c)
	from := rows[len(rows)*3/4].at
	tg := pickTargets(rows, from, rows[len(rows)-1].at.Add(time.Millisecond), 1, rand.New(rand.NewPCG(8, 8)))
	if len(tg) == 0 {
		t.Fatal("no target in the last quarter of the ledger")
	}
	return &walHistory{p: p, rows: rows, target: tg[0], last: last, base: b.Backup.StopTime}
}

// startRestore starts 'pg restore --start' as a process of its own.
func (h *walHistory) startRestore(t *testing.T, dir string, port int, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	stopAtEnd(t, h.p.c.BinDir, dir)
	cmd := h.p.cmd(append([]string{"--key-file", h.p.keyFile, "pg", "restore", "--target-dir", dir, "--start",
		"--port", strconv.Itoa(port), "--json"}, args...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// waitLog waits until the server log of dir holds s.
func waitLog(t *testing.T, dir, s string, timeout time.Duration, out *strings.Builder) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(pg.DefaultLogFile(dir))
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server log never said %q:\n%s\npg restore: %s", s, b, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recoveryState polls a server until it is paused in recovery or out of
// it, and returns which.
func recoveryState(t *testing.T, dsn string, timeout time.Duration, dir string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			var inRec bool
			var state string
			err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE '' END").Scan(&inRec, &state)
			conn.Close(ctx)
			if err == nil && !inRec {
				cancel()
				return "promoted"
			}
			if err == nil && state == "paused" {
				cancel()
				return "paused"
			}
		}
		cancel()
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(pg.DefaultLogFile(dir))
			t.Fatalf("the server neither paused nor promoted within %v (%v); server log:\n%s", timeout, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pgCtl(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "pg_ctl"), args...)
	pgtest.AsPostgres(t, cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pg_ctl %v: %v: %s", args, err, out)
	}
	return string(out)
}

// TestPGRestoreStartKilled: 'pg restore --start --target-action promote'
// killed (SIGKILL) once replay runs: the server goes on and stops at the
// target with exactly the target's rows (the shell takes what was
// spooled, restore-wal fetches the rest); it waits there paused (the
// command line of the fast promotion), is promoted by hand, and a later
// restart keeps it a primary with the same rows.
//
// SIGTERM (as SIGINT) instead: the restore says it was interrupted and
// exits 143, and the server goes on the same way.
func TestPGRestoreStartKilled(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		// A history each: the promoted server archives a new timeline
		// into its repository.
		t.Run(sig.String(), func(t *testing.T) { testRestoreStartKilled(t, newWALHistory(t, 24), sig) })
	}
}

func testRestoreStartKilled(t *testing.T, h *walHistory, sig syscall.Signal) {
	c := h.p.c
	dir := filepath.Join(h.p.dir, "killed-"+strconv.Itoa(int(sig)))
	port := pgtest.FreePort(t)
	cmd, out := h.startRestore(t, dir, port, "--to-time", rfc3339(h.target.at), "--target-action", "promote")
	waitLog(t, dir, "restored log file", 5*time.Minute, out)
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	b, _ := os.ReadFile(pg.DefaultLogFile(dir))
	t.Logf("segments restored when signalled: %d", strings.Count(string(b), "restored log file"))
	if sig == syscall.SIGTERM {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 143 {
			t.Errorf("pg restore after SIGTERM: %v, want exit 143\n%s", err, out)
		}
		if !strings.Contains(out.String(), "goes on recovering without nestguard") {
			t.Errorf("pg restore after SIGTERM does not say that the server goes on and pauses:\n%s", out)
		}
		if !strings.Contains(out.String(), "interrupted") {
			t.Errorf("pg restore after SIGTERM does not say it was interrupted:\n%s", out)
		}
		t.Logf("pg restore after SIGTERM: %v\n%s", err, out)
	}

	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.SocketDir, port)
	r := &restored{dir: dir, port: port}
	r.Recovery = &pg.RecoveryPoint{SocketDir: c.SocketDir}
	// The server was started to pause at the target (the fast
	// promotion's command line), and nobody is left to promote it,
	// unless the restore requested the promotion before it ended
	// (PostgreSQL 14-17, once the server accepted connections).
	state := recoveryState(t, dsn, 5*time.Minute, dir)
	checkLedger(t, r, h.target.want, "restore ended during replay")
	if state == "promoted" {
		t.Logf("the restore had requested the promotion: the server promoted at the target")
		return
	}
	// A restart before the promotion pauses at the target again.
	pgCtl(t, c.BinDir, "-D", dir, "-w", "-t", "120", "-l", pg.DefaultLogFile(dir), "restart")
	if s := recoveryState(t, dsn, 5*time.Minute, dir); s != "paused" {
		t.Errorf("restarted before the promotion: %s", s)
	}
	checkLedger(t, r, h.target.want, "restarted before the promotion")
	pgCtl(t, c.BinDir, "-D", dir, "-w", "promote")
	if s := recoveryState(t, dsn, 5*time.Minute, dir); s != "promoted" {
		t.Fatalf("after promote: %s", s)
	}
	checkLedger(t, r, h.target.want, "promoted by hand")
	pgCtl(t, c.BinDir, "-D", dir, "-w", "-t", "120", "-l", pg.DefaultLogFile(dir), "restart")
	if s := recoveryState(t, dsn, 2*time.Minute, dir); s != "promoted" {
		t.Errorf("restarted after the promotion: %s", s)
	}
	checkLedger(t, r, h.target.want, "restarted after the promotion")
}

// archivedSegments lists the segments in the repository, in order.
func (h *walHistory) archivedSegments(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(h.p.repo, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, e := range ents {
		if n := e.Name(); len(n) == 24 && !strings.Contains(n, ".") {
			segs = append(segs, n)
		}
	}
	slices.Sort(segs)
	return segs
}

// plantInSpool waits until the restore bound its spool and puts data
// there as segment name.
func plantInSpool(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	spool := filepath.Join(dir, "pg_wal", ".nestguard-spool")
	waitFile(t, filepath.Join(spool, ".owner"), 5*time.Minute)
	p := filepath.Join(spool, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, p)
}

// TestPGRestoreStartShutdown: with --target-action shutdown, 'pg restore
// --start' returns once the server shut down at the target, not when
// pg_ctl -W start returned (before postmaster.pid existed), and fails
// when the server stopped before the target: here a segment before it
// is zeroed in the spool, and PostgreSQL ends recovery there with
// "recovery ended before configured recovery target was reached".
func TestPGRestoreStartShutdown(t *testing.T) {
	h := newWALHistory(t, 16)
	segs := h.archivedSegments(t)
	target := []string{"--to-time", rfc3339(h.target.at), "--target-action", "shutdown"}

	dir := filepath.Join(h.p.dir, "shutdown")
	cmd, out := h.startRestore(t, dir, pgtest.FreePort(t), target...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pg restore: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
		t.Fatalf("pg restore returned before the server shut down at the target:\n%s", out)
	}
	if !strings.Contains(out.String(), `"state": "shut down"`) {
		t.Errorf("no shutdown reported:\n%s", out)
	}
	ctl := h.p.c.Run(t, "pg_controldata", "-D", dir)
	if !strings.Contains(ctl, "shut down in recovery") {
		t.Errorf("pg_controldata after the shutdown at the target:\n%s", ctl)
	}
	b, _ := os.ReadFile(pg.DefaultLogFile(dir))
	if !strings.Contains(string(b), "recovery stopping before commit") {
		t.Errorf("the server did not stop at the target; server log:\n%s", b)
	}

	dir = filepath.Join(h.p.dir, "short")
	cmd, out = h.startRestore(t, dir, pgtest.FreePort(t), target...)
	plantInSpool(t, dir, segs[len(segs)-4], make([]byte, 16<<20))
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("pg restore succeeded though recovery ended before the target:\n%s", out)
	}
	if !strings.Contains(out.String(), "without reaching the target") {
		t.Errorf("unclear failure: %s", out)
	}
}

// TestPGRestoreStartParamPause: max_connections raised on the source after
// the base backup (a parameter-change record in the WAL). The restored
// server, with the backup's lower setting and hot standby active, pauses
// when it replays that record (PostgreSQL 14 and later: "recovery has
// paused" because of insufficient parameter settings), before the target:
// 'pg restore --start --target-action pause' took that for the pause at
// the target and exited 0. It must fail and say why.
func TestPGRestoreStartParamPause(t *testing.T) {
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Exec(t, ledgerTable)
	l := startLedger(t, c.DSN(), 12)
	time.Sleep(300 * time.Millisecond)
	p.backup(t, c)
	time.Sleep(500 * time.Millisecond)
	rows0 := l.finish(t)
	c.Exec(t, "ALTER SYSTEM SET max_connections = 60")
	c.Stop(t)
	c = pgtest.StartExisting(t, c.DataDir, pgtest.Options{ArchiveCommand: p.archiveCommand("key")})
	l = startLedger(t, c.DSN(), 13)
	time.Sleep(2 * time.Second)
	rows := append(rows0, l.finish(t)...)
	switchAndWait(t, c)
	tg := pickTargets(rows, rows[len(rows0)].at, rows[len(rows)-1].at.Add(time.Millisecond), 1, rand.New(rand.NewPCG(3, 3)))
	if len(tg) == 0 {
		t.Fatal("no target")
	}
	// pause: the pause before the target is not the target's. promote
	// (requested early, PostgreSQL 14-17): PostgreSQL refuses it there
	// and aborts recovery; the restore fails.
	for _, action := range []string{"pause", "promote"} {
		dir := filepath.Join(p.dir, "param-"+action)
		stopAtEnd(t, c.BinDir, dir)
		began := time.Now()
		r := p.run("--key-file", p.keyFile, "pg", "restore", "--target-dir", dir, "--start",
			"--port", strconv.Itoa(pgtest.FreePort(t)), "--json", "--to-time", rfc3339(tg[0].at), "--target-action", action, "--start-timeout", "10m")
		clear := strings.Contains(r.stderr, "max_connections") // ours, or PostgreSQL's in the log's tail
		if r.code == 0 || !clear || action == "pause" && !strings.Contains(r.stderr, "recovery paused before the target") {
			log, _ := os.ReadFile(pg.DefaultLogFile(dir))
			t.Errorf("%s: pg restore paused before the target: exit %d after %v\n%s\n%s\nserver log:\n%s", action, r.code, time.Since(began), r.stdout, r.stderr, log)
		}
	}
}

// TestPGRestoreStartNoHotStandby: with hot_standby = off in the restored
// configuration a pause would be a shutdown, so a promotion at a target
// is PostgreSQL's own (no -c recovery_target_action=pause, no pg_ctl
// promote), and it ends at the target with exactly its rows.
func TestPGRestoreStartNoHotStandby(t *testing.T) {
	p := newPITREnv(t, pgtest.Options{Settings: map[string]string{"hot_standby": "off"}})
	tg := p.ledgerTarget(t, 14, 5)
	r := p.restore(t, "--to-time", rfc3339(tg[0].at), "--target-action", "promote")
	if r.Recovery.State != "promoted" {
		t.Fatalf("state %q, want promoted", r.Recovery.State)
	}
	checkLedger(t, r, tg[0].want, "promoted without hot standby")
	opts, _ := os.ReadFile(filepath.Join(r.dir, "postmaster.opts"))
	log, _ := os.ReadFile(pg.DefaultLogFile(r.dir))
	if strings.Contains(string(opts), "recovery_target_action") || strings.Contains(string(log), "received promote request") {
		t.Errorf("a fast promotion without hot standby:\n%s\n%s", opts, log)
	}
}
