package main

// End-to-end tests of WAL archiving through the binary, with a real
// PostgreSQL running 'nestguard pg archive-wal' as its archive_command.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/pgtest"
)

// pgEnv is a repository that PostgreSQL's OS user can use: nestguard runs
// as postgres (when the tests run as root), unlocked by a password file
// and a key file readable by it.
type pgEnv struct {
	*env
	passFile string
	keyFile  string
}

func newPGEnv(t *testing.T) *pgEnv {
	t.Helper()
	pgtest.Require(t)
	e := newEnv(t)
	// init runs in this process, before the repository is given to the
	// postgres user, so its key slot is cheap to unlock (fastKDF): every
	// command of a PostgreSQL test runs as a process of its own, and each
	// would otherwise pay a full Argon2id or, in FIPS test mode, a
	// 4,000,000-iteration PBKDF2 unlock.
	e.must("init")
	e.cred = pgtest.Credential(t)
	pe := &pgEnv{env: e, passFile: filepath.Join(e.dir, "pass"), keyFile: filepath.Join(e.dir, "wal.key")}
	if err := os.WriteFile(pe.passFile, []byte(e.pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, e.dir)
	e.must("key", "add", "--generate-key-file", pe.keyFile, "--label", "archive_command")
	return pe
}

// archiveCommand is an archive_command for this repository.
func (pe *pgEnv) archiveCommand(unlock string) string {
	flag := "--password-file " + pe.passFile
	if unlock == "key" {
		flag = "--key-file " + pe.keyFile
	}
	return fmt.Sprintf("%s --repo %s %s pg archive-wal %%p", ngShell(), pe.repo, flag)
}

func (pe *pgEnv) status(t *testing.T) map[string]any {
	t.Helper()
	var st map[string]any
	out := pe.must("pg", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("pg status --json: %v\n%s", err, out)
	}
	return st
}

// readyCount is how many segments wait for archive_command.
func readyCount(t *testing.T, c *pgtest.Cluster) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(c.DataDir, "pg_wal", "archive_status", "*.ready"))
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}

// measureArchiving runs load while archiving is paused, then turns
// archive_command on and times how long PostgreSQL's archiver takes to
// drain the backlog through nestguard.
func measureArchiving(t *testing.T, c *pgtest.Cluster, command string, load func()) (segments int, perCall time.Duration) {
	t.Helper()
	c.Exec(t, "ALTER SYSTEM SET archive_command = ''")
	c.Exec(t, "SELECT pg_reload_conf()")
	load()
	c.SwitchWAL(t)
	segments = readyCount(t, c)
	if segments == 0 {
		t.Fatal("no WAL segment waited for archiving")
	}
	began := time.Now()
	c.Exec(t, "ALTER SYSTEM SET archive_command = "+quoteLiteral(command))
	c.Exec(t, "SELECT pg_reload_conf()")
	deadline := began.Add(2 * time.Minute)
	for readyCount(t, c) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("archiver did not drain %d segments in 2 minutes\n%s", segments, c.LogTail())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return segments, time.Since(began) / time.Duration(segments)
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func TestPGArchiveWAL(t *testing.T) {
	t.Parallel()
	pe := newPGEnv(t)
	c := pgtest.Start(t, pgtest.Options{
		// On, with the command set by measureArchiving.
		Settings: map[string]string{"archive_mode": "on", "archive_command": ""},
	})

	// Throughput and latency of pgbench's WAL, unlocking with a passphrase
	// file and with a key file.
	for _, unlock := range []string{"password", "key"} {
		n, perCall := measureArchiving(t, c, pe.archiveCommand(unlock), func() {
			c.Pgbench(t, "-i", "-s", "3", "-q")
			c.Pgbench(t, "-c", "2", "-T", "2")
		})
		t.Logf("archive-wal with --%s-file: %d segments, %.1f ms/call, %.1f segments/s (16 MiB segments of pgbench WAL, through PostgreSQL's archiver)",
			unlock, n, float64(perCall.Microseconds())/1000, float64(time.Second)/float64(perCall))
	}

	// A pgbench load archives as it goes; the status shows it.
	c.Pgbench(t, "-c", "2", "-T", "2")
	last := c.SwitchWAL(t)
	c.WaitArchived(t, last, time.Minute)
	st := pe.status(t)
	tls := st["timelines"].([]any)
	if len(tls) != 1 {
		t.Fatalf("timelines: %v", tls)
	}
	tl := tls[0].(map[string]any)
	if segs, archived := int64(tl["segments"].(float64)), c.QueryInt(t, "SELECT archived_count FROM pg_stat_archiver"); segs != archived || segs < 4 {
		t.Errorf("status shows %d segments, PostgreSQL archived %d", segs, archived)
	}
	if st["newest_wal"] != last {
		t.Errorf("newest WAL %v, last archived %s", st["newest_wal"], last)
	}
	if rpo, ok := st["rpo_seconds"].(float64); !ok || rpo < 0 || rpo > 60 {
		t.Errorf("rpo_seconds = %v", st["rpo_seconds"])
	}
	if g := st["gaps"].([]any); len(g) != 0 {
		t.Errorf("gaps in a continuous archive: %v", g)
	}
	human := pe.must("pg", "status")
	if !strings.Contains(human, last) || !strings.Contains(human, "RPO") {
		t.Errorf("pg status:\n%s", human)
	}

	// Restore an archived segment, then push it again: identical is success.
	dir := pgtest.TempDir(t)
	pgtest.Chown(t, dir)
	got := filepath.Join(dir, last)
	pe.must("pg", "restore-wal", "--prefetch", "0", last, got)
	if r := pe.run("pg", "archive-wal", got); r.code != 0 {
		t.Errorf("re-push of an identical segment: exit %d\n%s", r.code, r.stderr)
	}
	// The same name with other content is refused and not stored.
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-100] ^= 0xFF
	other := filepath.Join(dir, "other")
	os.WriteFile(other, b, 0o644)
	r := pe.run("pg", "archive-wal", "--name", last, other)
	if r.code != 1 || !strings.Contains(r.stderr, "already archived") || !strings.Contains(r.stderr, "refusing to overwrite") {
		t.Errorf("different segment under an archived name: exit %d\n%s", r.code, r.stderr)
	}
	again := filepath.Join(dir, "again")
	pe.must("pg", "restore-wal", "--prefetch", "0", last, again)
	if b2, _ := os.ReadFile(again); string(b2) == string(b) {
		t.Error("the archived segment was overwritten")
	}

	// A missing file: exit 1, one line, nothing written.
	missing := filepath.Join(dir, "RECOVERYHISTORY")
	r = pe.run("pg", "restore-wal", "000000FF.history", missing)
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "not in the repository") {
		t.Errorf("missing history file: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("restore-wal of a missing file wrote dest")
	}
}

func TestPGWALDamage(t *testing.T) {
	t.Parallel()
	pe := newPGEnv(t)
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: pe.archiveCommand("key")})
	var segs []string
	c.Exec(t, "CREATE TABLE t (v text)")
	for range 5 {
		c.Exec(t, "INSERT INTO t SELECT md5(g::text) FROM generate_series(1, 1000) g")
		segs = append(segs, c.SwitchWAL(t))
	}
	c.WaitArchived(t, segs[len(segs)-1], time.Minute)

	// A corrupted WAL object is detected on restore and never written.
	victim := filepath.Join(pe.repo, "wal", segs[1])
	os.Chmod(victim, 0o600)
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x08
	os.WriteFile(victim, b, 0o400)
	dir := pgtest.TempDir(t)
	pgtest.Chown(t, dir)
	dest := filepath.Join(dir, "RECOVERYXLOG")
	r := pe.run("pg", "restore-wal", "--prefetch", "0", segs[1], dest)
	if r.code == 0 || !strings.Contains(r.stderr, "damaged") {
		t.Errorf("corrupted WAL object: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Error("a corrupted segment was written to dest")
	}

	// A missing segment: the status names the gap.
	if err := os.Remove(filepath.Join(pe.repo, "wal", segs[2])); err != nil {
		t.Fatal(err)
	}
	st := pe.status(t)
	gaps := st["gaps"].([]any)
	if len(gaps) != 1 || gaps[0].(map[string]any)["first_missing"] != segs[2] || gaps[0].(map[string]any)["last_missing"] != segs[2] {
		t.Errorf("gaps: %v", gaps)
	}
	if human := pe.must("pg", "status"); !strings.Contains(human, segs[2]+" missing") {
		t.Errorf("pg status does not name the gap:\n%s", human)
	}
}

// TestPGRestoreWALPrefetch restores a run of archived segments the way
// PostgreSQL's recovery asks for them, with the prefetch spool.
func TestPGRestoreWALPrefetch(t *testing.T) {
	t.Parallel()
	pe := newPGEnv(t)
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: pe.archiveCommand("key")})
	c.Exec(t, "CREATE TABLE t (v text)")
	var segs []string
	for range 8 {
		c.Exec(t, "INSERT INTO t SELECT md5(g::text) FROM generate_series(1, 20000) g")
		segs = append(segs, c.SwitchWAL(t))
	}
	c.WaitArchived(t, segs[len(segs)-1], time.Minute)

	pgWAL := filepath.Join(pgtest.TempDir(t), "pg_wal")
	os.Mkdir(pgWAL, 0o700)
	pgtest.Chown(t, filepath.Dir(pgWAL))
	dest := filepath.Join(pgWAL, "RECOVERYXLOG")
	spool := filepath.Join(pgWAL, ".nestguard-spool")
	for _, mode := range []string{"--prefetch-wait", "background"} {
		hits := 0
		began := time.Now()
		for i, s := range segs {
			if _, err := os.Stat(filepath.Join(spool, s)); err == nil && i > 0 {
				hits++
			}
			args := []string{"--key-file", pe.keyFile, "pg", "restore-wal", "--prefetch", "4", s, dest}
			if mode != "background" {
				args = append(args, mode)
			}
			pe.must(args...)
			if fi, err := os.Stat(dest); err != nil || fi.Size() != 16<<20 {
				t.Fatalf("%s: %v %v", s, fi, err)
			}
			os.Remove(dest)
			if mode == "background" {
				time.Sleep(20 * time.Millisecond) // replay time, while the prefetch runs
			}
		}
		t.Logf("restore-wal %s: %d segments in %v, spool hits %d of %d", mode, len(segs), time.Since(began).Round(time.Millisecond), hits, len(segs)-1)
		if mode != "background" && hits < len(segs)-2 {
			t.Errorf("%s: only %d spool hits", mode, hits)
		}
		// Past the end of the archive: exit 1 and the spool goes away.
		next := segs[len(segs)-1][:16] + fmt.Sprintf("%08X", mustHex(t, segs[len(segs)-1][16:])+1)
		waitNoPrefetch(t, spool)
		if r := pe.run("--key-file", pe.keyFile, "pg", "restore-wal", next, dest); r.code != 1 {
			t.Errorf("past the end: exit %d %s", r.code, r.stderr)
		}
		waitNoPrefetch(t, spool)
		if _, err := os.Stat(spool); err == nil {
			entries, _ := os.ReadDir(spool)
			t.Logf("spool after the end of the archive: %d entries", len(entries))
			os.RemoveAll(spool) // a background prefetch may have landed after the cleanup
		}
	}
}

func mustHex(t *testing.T, s string) uint64 {
	t.Helper()
	var v uint64
	if _, err := fmt.Sscanf(s, "%X", &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// waitNoPrefetch waits for a background prefetch to finish (its lock).
func waitNoPrefetch(t *testing.T, spool string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		f, err := os.Open(filepath.Join(spool, ".lock"))
		if err != nil {
			return
		}
		err = flockNB(f)
		f.Close()
		if err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("background prefetch still running after 30s")
}

func flockNB(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }
