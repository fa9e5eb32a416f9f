package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/audit"
)

type auditLogDoc struct {
	Records []struct {
		Position   uint64            `json:"position"`
		Command    string            `json:"command"`
		User       string            `json:"user"`
		Host       string            `json:"host"`
		KeySlot    string            `json:"key_slot"`
		Options    map[string]string `json:"options"`
		Args       []string          `json:"args"`
		Repository string            `json:"repository"`
		Outcome    string            `json:"outcome"`
		Message    string            `json:"message"`
		Wrote      []string          `json:"wrote"`
		Batch      []auditBatchItem  `json:"batch"`
	} `json:"records"`
}

// auditBatchItem is one call of a batched record.
type auditBatchItem struct {
	Arg     string `json:"arg"`
	Outcome string `json:"outcome"`
}

func (e *env) auditLog(args ...string) auditLogDoc {
	e.t.Helper()
	out := e.must(append([]string{"audit", "log", "--json"}, args...)...)
	var doc auditLogDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		e.t.Fatalf("audit log --json: %v\n%s", err, out)
	}
	return doc
}

func (d auditLogDoc) commands() []string {
	var cs []string
	for _, r := range d.Records {
		cs = append(cs, r.Command+":"+r.Outcome)
	}
	return cs
}

// noPassphrase is e without any passphrase: what an auditor has.
func (e *env) noPassphrase() *env {
	a := *e
	a.pass = ""
	return &a
}

// TestAuditTrail: every command that opens the repository leaves a record
// (who, what, on what, outcome, what it wrote); the audit commands do
// not; an auditor verifies the log with the verifier key alone.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "a"), []byte("audit me"), 0o644)
	e.must("backup", src, "--tag", "nightly")
	if r := e.run("restore", "deadbeef", "--target", filepath.Join(e.dir, "out")); r.code != exitError {
		t.Fatalf("restore of a missing snapshot: exit %d", r.code)
	}
	e.must("verify")
	e.must("snapshots")

	doc := e.auditLog()
	want := []string{"init:success", "backup:success", "restore:error", "verify:success", "snapshots:success"}
	if got := doc.commands(); !slices.Equal(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}
	b := doc.Records[1]
	if b.User == "" || b.Host == "" || b.KeySlot == "" || b.Repository != e.repo || !slices.Equal(b.Args, []string{src}) ||
		b.Options["tag"] != "[nightly]" || b.Options["repo"] != e.repo {
		t.Errorf("backup record: %+v", b)
	}
	if !slices.ContainsFunc(b.Wrote, func(s string) bool { return strings.HasPrefix(s, "snapshots/") }) {
		t.Errorf("backup record wrote %v: no snapshot", b.Wrote)
	}
	if r := doc.Records[2]; !strings.Contains(r.Message, "deadbeef") {
		t.Errorf("failed restore's message: %q", r.Message)
	}
	for _, r := range doc.Records {
		for k, v := range r.Options {
			if strings.Contains(v, e.pass) {
				t.Errorf("record of %s: option %s holds the passphrase", r.Command, k)
			}
		}
	}
	if got := e.auditLog("--who", "nobody-such"); len(got.Records) != 0 {
		t.Errorf("--who nobody-such: %v", got.commands())
	}
	if got := e.auditLog("--since=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); len(got.Records) != 0 {
		t.Errorf("--since an hour from now: %v", got.commands())
	}

	// The auditor: the verifier key and an exported checkpoint, no
	// passphrase.
	vkey := strings.TrimSpace(e.must("audit", "key"))
	cp := filepath.Join(e.dir, "cp1")
	os.WriteFile(cp, []byte(e.must("audit", "checkpoint")), 0o644)
	aud := e.noPassphrase()
	out := aud.must("audit", "verify", "--key", vkey, "--checkpoint", cp)
	if !strings.Contains(out, "5 records") || !strings.Contains(out, "OK") {
		t.Errorf("audit verify: %s", out)
	}
	e.must("snapshots")
	out = aud.must("audit", "verify", "--key", vkey, "--from-checkpoint", cp)
	if !strings.Contains(out, "6 records in 1 entries (1 read: incremental from the checkpoint of size 5)") {
		t.Errorf("incremental audit verify: %s", out)
	}
	if r := aud.run("audit", "checkpoint", "--key", vkey); r.code != 0 || !strings.Contains(r.stdout, "nestguard audit log") {
		t.Errorf("audit checkpoint --key without passphrase: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	// Nothing above was recorded: reading the log does not grow it.
	if got := len(e.auditLog().Records); got != 6 {
		t.Errorf("%d records after the audit commands, want 6", got)
	}
	// A wrong key is refused.
	other := newEnv(t)
	other.must("init")
	okey := strings.TrimSpace(other.must("audit", "key"))
	if r := aud.run("audit", "verify", "--key", okey); r.code == 0 {
		t.Error("audit verify with another repository's key succeeded")
	}
}

// TestAuditDetectsTampering: the e2e form of internal/audit's detection
// tests: a modified entry, and a rollback of the whole repository to an
// older copy, which only an exported checkpoint reveals.
func TestAuditDetectsTampering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "a"), []byte("one"), 0o644)
	e.must("backup", src)
	old := filepath.Join(e.dir, "old")
	if out, err := exec.Command("cp", "-a", e.repo, old).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	e.must("backup", src)
	e.must("snapshots")
	vkey := strings.TrimSpace(e.must("audit", "key"))
	cp := filepath.Join(e.dir, "cp")
	os.WriteFile(cp, []byte(e.must("audit", "checkpoint")), 0o644)
	aud := e.noPassphrase()
	aud.must("audit", "verify", "--key", vkey, "--checkpoint", cp)

	// Rolled back: the repository is replaced by its older copy.
	rolled := *aud
	rolled.repo = old
	r := rolled.run("audit", "verify", "--key", vkey, "--checkpoint", cp)
	if r.code != exitError || !strings.Contains(r.stdout, "ahead of the log") {
		t.Errorf("verify of a rolled-back repository: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A record modified in place.
	ents, _ := filepath.Glob(filepath.Join(e.repo, "audit", "*-*"))
	slices.Sort(ents)
	p := ents[1]
	b, _ := os.ReadFile(p)
	b[60] ^= 0x40
	os.Chmod(p, 0o600)
	os.WriteFile(p, b, 0o600)
	r = aud.run("audit", "verify", "--key", vkey)
	if r.code != exitError || !strings.Contains(r.stdout, "problem") {
		t.Errorf("verify of a modified record: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Writers refuse to build on a log whose newest entry is damaged;
	// here an older one is, which the next append does not read.
	e.must("snapshots")
}

// backupDirsAtOnce runs n backups in e at once, as processes, each of
// a directory of its own, and fails the test unless every one succeeds.
func backupDirsAtOnce(t *testing.T, e *env, n int) {
	t.Helper()
	var cmds []*exec.Cmd
	for i := range n {
		dir := filepath.Join(e.dir, fmt.Sprint("src", i))
		os.MkdirAll(dir, 0o755)
		writeFile(t, filepath.Join(dir, "f"), dir, 0o644)
		c := e.cmd("backup", "-q", dir)
		c.Stderr = os.Stderr
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("backup: %v", err)
		}
	}
}

// TestAuditConcurrentBackups: backups running at once, as processes, each
// get their record in; the log does not fork and verifies.
func TestAuditConcurrentBackups(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	const n = 4
	backupDirsAtOnce(t, e, n)
	doc := e.auditLog()
	backups := 0
	for _, r := range doc.Records {
		if r.Command == "backup" && r.Outcome == "success" {
			backups++
		}
	}
	if backups != n {
		t.Fatalf("%d backup records, want %d: %v", backups, n, doc.commands())
	}
	vkey := strings.TrimSpace(e.must("audit", "key"))
	if out := e.noPassphrase().must("audit", "verify", "--key", vkey); !strings.Contains(out, fmt.Sprintf("%d records", n+1)) {
		t.Errorf("audit verify: %s", out)
	}
}

// TestAuditCopy: a copy carries the source's audit log, which verifies in
// the destination with the source's verifier key, beside the
// destination's own log.
func TestAuditCopy(t *testing.T) {
	t.Parallel()
	src := newEnv(t)
	src.must("init")
	dir := filepath.Join(src.dir, "data")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "f"), []byte("copied"), 0o644)
	src.must("backup", dir)
	skey := strings.TrimSpace(src.must("audit", "key"))

	dst := newEnv(t)
	dst.must("init")
	dst.extraEnv = []string{"NESTGUARD_FROM_PASSWORD=" + src.pass}
	dst.must("copy", "--from-repo", src.repo, "--all")
	dkey := strings.TrimSpace(dst.must("audit", "key"))

	aud := dst.noPassphrase()
	out := aud.must("audit", "verify", "--key", skey, "--key", dkey)
	// The source's log as it was when copy read it (init, backup), and
	// the destination's own (init, this copy).
	if strings.Count(out, "2 records in 2 entries") != 2 || strings.Contains(out, "problem") {
		t.Errorf("audit verify on the copy:\n%s", out)
	}
	// A second copy carries the new entries (the first copy's record
	// in the source) and nothing twice.
	dst.must("copy", "--from-repo", src.repo, "--all")
	if out := aud.must("audit", "verify", "--key", skey); !strings.Contains(out, "3 records") {
		t.Errorf("after a second copy:\n%s", out)
	}
	// The copied log's records open with the source's passphrase only:
	// the destination's own log shows its own commands.
	if got := dst.auditLog().commands(); !slices.Equal(got, []string{"init:success", "copy:success", "copy:success"}) {
		t.Errorf("destination's own log: %v", got)
	}
}

// TestAuditArchiveWALBatched: pg archive-wal spools its calls and records
// them 64 at a time, each call in the batch.
func TestAuditArchiveWALBatched(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	spool := filepath.Join(e.dir, "spool")
	e.extraEnv = []string{"NESTGUARD_AUDIT_SPOOL=" + spool}
	// Timeline history files: archived like segments, without a
	// segment's size and header.
	seg := filepath.Join(e.dir, "history")
	os.WriteFile(seg, []byte("1\t0/3000000\tno recovery target specified\n"), 0o600)
	name := func(i int) string { return fmt.Sprintf("%08X.history", i+2) }
	began := time.Now()
	for i := range 63 {
		e.must("pg", "archive-wal", "--name", name(i), seg)
	}
	// A spool is also flushed when its oldest call is audit.SpoolAge
	// old: on a machine slow enough for that, the calls come in more
	// batches than one, in order.
	quick := time.Since(began) < audit.SpoolAge
	if got := e.auditLog().commands(); quick && !slices.Equal(got, []string{"init:success"}) {
		t.Fatalf("after 63 calls: %v, want them spooled", got)
	}
	e.must("pg", "archive-wal", "--name", name(63), seg)
	quick = quick && time.Since(began) < audit.SpoolAge
	doc := e.auditLog()
	var batch []auditBatchItem
	for i, c := range doc.commands() {
		switch {
		case i == 0 && c == "init:success":
		case i > 0 && c == "pg archive-wal:success":
			batch = append(batch, doc.Records[i].Batch...)
		default:
			t.Fatalf("after 64 calls: %v", doc.commands())
		}
	}
	if quick && len(doc.Records) != 2 {
		t.Errorf("64 calls within %v made %d records, want one batch", audit.SpoolAge, len(doc.Records)-1)
	}
	// After a flush by age the calls since wait in the spool for the
	// next flush: what is recorded is the calls from the first, in order.
	if quick && len(batch) != 64 || len(batch) == 0 || len(batch) > 64 {
		t.Fatalf("batches: %d items in all, want 64 (fewer, the first ones, if the calls took over %v)", len(batch), audit.SpoolAge)
	}
	for i, b := range batch {
		if b.Arg != seg+" --name="+name(i) || b.Outcome != "success" {
			t.Errorf("batched call %d: %+v, want %s --name=%s, success", i, b, seg, name(i))
		}
	}
}

// TestAuditArchiveWALAsync: the background worker of archive-wal --async
// spools an item per file it archived, as the calls would have, and the
// calls that only took its acknowledgement add none.
func TestAuditArchiveWALAsync(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.subprocess = true // the worker is a process of its own, with the calls' environment
	e.must("init")
	spool := filepath.Join(e.dir, "spool")
	e.extraEnv = []string{"NESTGUARD_AUDIT_SPOOL=" + spool}
	wal := filepath.Join(e.dir, "pg_wal")
	os.MkdirAll(filepath.Join(wal, "archive_status"), 0o700)
	name := func(i int) string { return fmt.Sprintf("%08X.history", i+2) }
	// A worker with nothing to do (one that lost the race for the spool's
	// lock) adds no item of its own: there was no such call.
	e.must("pg", "archive-wal", "--async", "--async-worker", "--worker-idle", "100ms", filepath.Join(wal, name(0)))
	for i := range 64 {
		os.WriteFile(filepath.Join(wal, name(i)), fmt.Appendf(nil, "%d\t0/3000000\tno recovery target specified\n", i+1), 0o600)
		os.WriteFile(filepath.Join(wal, "archive_status", name(i)+".ready"), nil, 0o600)
	}
	for i := range 64 {
		e.must("pg", "archive-wal", "--async", "--worker-idle", "1s", filepath.Join(wal, name(i)))
		st := filepath.Join(wal, "archive_status", name(i))
		os.Rename(st+".ready", st+".done")
	}
	deadline := time.Now().Add(time.Minute)
	for {
		doc := e.auditLog()
		if got := doc.commands(); slices.Equal(got, []string{"init:success", "pg archive-wal:success"}) {
			// Every call once, in the order the worker archived the
			// files (two at once: not always the calls' order).
			var args, want []string
			for _, b := range doc.Records[1].Batch {
				args = append(args, b.Arg)
			}
			for i := range 64 {
				want = append(want, filepath.Join(wal, name(i))+" --async")
			}
			slices.Sort(args)
			if !slices.Equal(args, want) {
				t.Errorf("batch: %d items, want the 64 calls: %v", len(args), args)
			}
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("audit log: %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAuditRestoreWALUnrecorded: pg restore-wal that delivered its file
// exits 0 even when its call can be neither spooled nor recorded (second
// review: it exited 1, which PostgreSQL reads as "not archived" and ends
// recovery early), with a warning; one that could not deliver keeps its
// exit code.
func TestAuditRestoreWALUnrecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	hist := filepath.Join(e.dir, "history")
	os.WriteFile(hist, []byte("1\t0/3000000\tno recovery target specified\n"), 0o600)
	e.must("pg", "archive-wal", "--name", "00000002.history", hist)
	// No spool (a file where its directory would be), and an audit log
	// that cannot be read or appended to.
	notDir := filepath.Join(e.dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	e.extraEnv = []string{"NESTGUARD_AUDIT_SPOOL=" + filepath.Join(notDir, "spool")}
	if err := os.Rename(filepath.Join(e.repo, "audit"), filepath.Join(e.dir, "audit")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.repo, "audit"), nil, 0o600)
	dest := filepath.Join(e.dir, "RECOVERYHISTORY")
	r := e.run("pg", "restore-wal", "00000002.history", dest)
	if r.code != 0 || !strings.Contains(r.stderr, "audit record of this pg restore-wal was not stored") {
		t.Fatalf("restore-wal, delivered, unrecorded: exit %d\n%s", r.code, r.stderr)
	}
	if b, err := os.ReadFile(dest); err != nil || string(b) != "1\t0/3000000\tno recovery target specified\n" {
		t.Fatalf("restored history file: %q %v", b, err)
	}
	if r := e.run("pg", "restore-wal", "00000003.history", dest+"3"); r.code != 1 {
		t.Fatalf("restore-wal of a file not archived, unrecorded: exit %d, want 1\n%s", r.code, r.stderr)
	}
	// Any other command still fails when its record is not stored.
	if r := e.run("snapshots"); r.code == 0 {
		t.Fatalf("snapshots, unrecorded: exit 0\n%s", r.stderr)
	}
}
