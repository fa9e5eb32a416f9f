package main

// End-to-end test of the asynchronous archive_command (archive-wal
// --async) with a real PostgreSQL, and a point-in-time recovery from what
// it archived.

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/pgtest"
)

func TestPGArchiveWALAsync(t *testing.T) {
	t.Parallel()
	pe := newPGEnv(t)
	command := strings.Replace(pe.archiveCommand("key"), " pg archive-wal ", " pg archive-wal --async --worker-idle 2s ", 1)
	p := &pitrEnv{pgEnv: pe, c: pgtest.Start(t, pgtest.Options{Checksums: true,
		Settings: map[string]string{"archive_mode": "on", "archive_command": ""}})}
	c := p.c

	// A backlog drained through the worker.
	n, perCall := measureArchiving(t, c, command, func() {
		c.Pgbench(t, "-i", "-s", "3", "-q")
		c.Pgbench(t, "-c", "2", "-T", "2")
	})
	t.Logf("archive-wal --async: %d segments, %.1f ms/segment, %.1f segments/s (through PostgreSQL's archiver)",
		n, float64(perCall.Microseconds())/1000, float64(time.Second)/float64(perCall))
	spool := filepath.Join(c.DataDir, "pg_wal", pg.ArchiveSpoolName)
	if fi, err := os.Stat(spool); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool %s: %v %v", spool, fi, err)
	}

	// Point-in-time recovery from what the worker archived, to a time
	// and to the latest.
	c.Exec(t, ledgerTable)
	l := startLedger(t, c.DSN(), 3)
	time.Sleep(500 * time.Millisecond)
	stopLoad := pgbenchLoad(t, c, 4)
	b := p.backup(t, c)
	for range 3 {
		time.Sleep(700 * time.Millisecond)
		switchAndWait(t, c)
	}
	stopLoad()
	rows := l.finish(t)
	last := switchAndWait(t, c)
	srcDump := dump(t, c, c.SocketDir, c.Port)
	// The newest segment stored is the newest PostgreSQL asked for and
	// was acknowledged: at least the one switched to last, never one it
	// did not ask for. PostgreSQL may close and archive another segment
	// between the two readings (a checkpoint's WAL), so they are taken
	// again until they agree.
	var st map[string]any
	var archived string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st = pe.status(t)
		archived = c.QueryString(t, "SELECT last_archived_wal FROM pg_stat_archiver")
		if nw, _ := st["newest_wal"].(string); nw == archived || time.Now().After(deadline) {
			break
		}
	}
	if g := st["gaps"].([]any); len(g) != 0 {
		t.Errorf("gaps in the archive: %v", g)
	}
	if nw, _ := st["newest_wal"].(string); nw != archived || nw < last {
		t.Errorf("newest WAL %v, last switched %s, PostgreSQL's last archived %s", st["newest_wal"], last, archived)
	}

	targets := pickTargets(rows, b.Backup.StopTime, rows[len(rows)-1].at.Add(time.Millisecond), 1, rand.New(rand.NewPCG(5, 5)))
	if len(targets) == 0 {
		t.Fatalf("no usable target among %d ledger rows", len(rows))
	}
	tg := targets[0]
	r := p.restore(t, "--to-time", rfc3339(tg.at), "--target-action", "pause")
	checkLedger(t, r, tg.want, "restore to "+rfc3339(tg.at))
	stopServer(t, c.BinDir, r.dir)
	r = p.restore(t, "--to-latest")
	if got := dump(t, c, r.Recovery.SocketDir, r.port); got != srcDump {
		t.Errorf("pg_dump of the restored cluster differs from the source's: %s", firstDiff(srcDump, got))
	}

	// A segment of the same name but other content is refused: the
	// call fails with the worker's error, and the stored copy stays.
	dir := pgtest.TempDir(t)
	pgtest.Chown(t, dir)
	restoredSeg := filepath.Join(dir, "restored")
	pe.must("pg", "restore-wal", "--prefetch", "0", last, restoredSeg)
	fake := filepath.Join(dir, "pg_wal")
	os.MkdirAll(filepath.Join(fake, "archive_status"), 0o700)
	data, err := os.ReadFile(restoredSeg)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-100] ^= 0xFF
	os.WriteFile(filepath.Join(fake, last), data, 0o600)
	os.WriteFile(filepath.Join(fake, "archive_status", last+".ready"), nil, 0o600)
	pgtest.Chown(t, dir)
	res := pe.run("--key-file", pe.keyFile, "pg", "archive-wal", "--async", "--worker-idle", "1s", "--timeout", "30s", filepath.Join(fake, last))
	if res.code != 1 || !strings.Contains(res.stderr, "different file of the same name") {
		t.Errorf("a different segment under an archived name, --async: exit %d\n%s", res.code, res.stderr)
	}
	if oks, _ := filepath.Glob(filepath.Join(fake, pg.ArchiveSpoolName, "*.ok")); len(oks) != 0 {
		t.Errorf("acknowledged: %v", oks)
	}
	// Never queued by PostgreSQL: archived by the call itself.
	os.Remove(filepath.Join(fake, "archive_status", last+".ready"))
	if res := pe.run("--key-file", pe.keyFile, "pg", "archive-wal", "--async", "--name", last, restoredSeg); res.code != 0 {
		t.Errorf("an identical segment not queued, --async: exit %d\n%s", res.code, res.stderr)
	}
	if archived := c.QueryInt(t, "SELECT archived_count FROM pg_stat_archiver"); archived < int64(n) {
		t.Errorf("PostgreSQL archived %d files", archived)
	}
	if failed := c.QueryInt(t, "SELECT failed_count FROM pg_stat_archiver"); failed != 0 {
		t.Errorf("archive_command failed %d times:\n%s", failed, c.LogTail())
	}
}
