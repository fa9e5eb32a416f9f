package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/compliance"
)

// TestAuditNoSecretsInRecords: a connection string's password (refused,
// but the refused command is recorded) never reaches a record, in either
// of libpq's forms.
func TestAuditNoSecretsInRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	pgdata := filepath.Join(e.dir, "pgdata")
	os.MkdirAll(pgdata, 0o700)
	for _, dsn := range []string{
		"host=/nonexistent user=u password=kw-s3cret dbname=x",
		"host=/nonexistent user=u password = 'kw s3cret quoted'",
		"postgres://u:url-s3cret@127.0.0.1:1/db",
		"postgres://u@127.0.0.1:1/db?password=query-s3cret",
	} {
		if r := e.run("pg", "backup", "--pgdata", pgdata, "--dsn", dsn); r.code == 0 {
			t.Fatalf("pg backup --dsn %q succeeded", dsn)
		}
	}
	out := e.must("audit", "log", "--json")
	if !strings.Contains(out, `"pg backup"`) {
		t.Fatalf("no pg backup record:\n%s", out)
	}
	for _, s := range []string{"s3cret", e.pass} {
		if strings.Contains(out, s) {
			t.Errorf("audit log --json holds %q:\n%s", s, out)
		}
	}
}

// TestAuditLogEscapesText: what a record says (arguments, messages) is
// shown escaped, so that a path or a planted object name cannot send
// escape sequences to the auditor's terminal. (Invalid UTF-8 is stored
// as U+FFFD: records are JSON.)
func TestAuditLogEscapesText(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	evil := filepath.Join(e.dir, "\x1b]0;pwned\x07\x1b[2J\xff")
	e.run("backup", evil)
	out := e.must("audit", "log")
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `\x1b]0;pwned\a\x1b[2J`) {
		t.Errorf("audit log printed a raw escape sequence or lost the argument: %q", out)
	}
}

// TestAuditVerifyBadCheckpointFiles: a checkpoint file that is missing,
// malformed or endless makes verify exit 1 and says why, in --json too,
// without reading an endless file into memory.
func TestAuditVerifyBadCheckpointFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	bad := filepath.Join(e.dir, "bad.cp")
	os.WriteFile(bad, []byte("nestguard audit log x\n1\nAAAA\x1b[31m\n\n— k sig\n"), 0o644)
	for _, file := range []string{filepath.Join(e.dir, "missing.cp"), bad, "/dev/zero"} {
		r := e.run("audit", "verify", "--json", "--checkpoint", file)
		var doc struct {
			OK       bool     `json:"ok"`
			Problems []string `json:"problems"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatalf("--checkpoint %s: %v\n%s%s", file, err, r.stdout, r.stderr)
		}
		if r.code != exitError || doc.OK || len(doc.Problems) != 1 || !strings.Contains(doc.Problems[0], file) {
			t.Errorf("--checkpoint %s: exit %d, %+v", file, r.code, doc)
		}
	}
}

// TestAuditSigningKeyDeleted: with audit/key deleted from the storage (a
// storage-only attacker), 'audit verify' with the passphrase says the
// key is missing from a log that has entries, never that the log is
// empty; the compliance report fails the audit trail, still reports on
// the records, and proves nothing; the auditor's verifier key still
// checks the log.
func TestAuditSigningKeyDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	writeFile(t, filepath.Join(src, "a"), "one", 0o644)
	e.must("backup", src)
	vkey := strings.TrimSpace(e.must("audit", "key"))
	if err := os.Remove(filepath.Join(e.repo, "audit", "key")); err != nil {
		t.Fatal(err)
	}
	r := e.run("audit", "verify")
	if r.code != exitError || !strings.Contains(r.stderr, "audit/key is missing, but the audit log has 2 entries") || strings.Contains(r.stderr, "no audit log yet") {
		t.Errorf("audit verify without the signing key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	cfg := filepath.Join(e.dir, "nestguard.toml")
	writeFile(t, cfg, "", 0o600)
	doc, code := e.report(cfg)
	c := doc.control(t, "audit-trail")
	if code != exitError || c.Status != compliance.Fail || !hasFinding(c, "audit/key is missing") || doc.Audit != nil {
		t.Errorf("report without the signing key: exit %d, audit trail %s %q %q, proofs %v", code, c.Status, c.Summary, c.Findings, doc.Audit != nil)
	}
	if f := doc.control(t, "failed-operations"); f.Status != compliance.Pass || !slices.Equal(f.Evidence, []uint64{0, 1}) {
		t.Errorf("failed-operations without the signing key: %s %q, cites %v (the records still open)", f.Status, f.Summary, f.Evidence)
	}
	e.noPassphrase().must("audit", "verify", "--key", vkey)
}

// TestAuditLogShowsMissingRecords: 'audit log' on a log with an entry
// deleted (the first, or one in the middle) says which records are
// missing and exits 1, in --json too, rather than showing the rest as a
// whole log.
func TestAuditLogShowsMissingRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	e.must("snapshots")
	e.must("snapshots")
	e.must("snapshots")
	entries, _ := filepath.Glob(filepath.Join(e.repo, "audit", "*-*"))
	slices.Sort(entries)
	if len(entries) != 4 {
		t.Fatalf("%d entries, want 4", len(entries))
	}
	for _, i := range []int{2, 0} {
		if err := os.Remove(entries[i]); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("records %d to %d are missing", i, i)
		r := e.run("audit", "log")
		if r.code != exitError || !strings.Contains(r.stdout, want) || !strings.Contains(r.stderr, "audit verify") {
			t.Errorf("audit log with entry %d deleted: exit %d, want 1 and %q\n%s%s", i, r.code, want, r.stdout, r.stderr)
		}
		r = e.run("audit", "log", "--json")
		var doc struct {
			Damaged []string `json:"damaged"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != exitError || !slices.ContainsFunc(doc.Damaged, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("audit log --json with entry %d deleted: exit %d, %v, damaged %q", i, r.code, err, doc.Damaged)
		}
	}
}

// TestAuditLogInvertedRange: --since not before --until can match
// nothing: a usage error (as report compliance's --from and --to), not
// an empty log that exits 0.
func TestAuditLogInvertedRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	for _, args := range [][]string{{"--since", "2027-01-01", "--until", "2026-01-01"}, {"--since", "1h", "--until", "2h"}, {"--since", "2026-12-01", "--until", "2026-12-01"}} {
		r := e.run(append([]string{"audit", "log"}, args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--since") || !strings.Contains(r.stderr, "--until") {
			t.Errorf("audit log %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	if got := len(e.auditLog("--since", "2026-01-01", "--until", "2126-01-01").Records); got != 1 {
		t.Errorf("a range around now: %d records, want 1", got)
	}
}

// TestAuditLogDurations: --since and --until take calendar durations
// (90d, 1y) as forget's --keep-within does, besides Go's (24h); a
// negative one, which would count forward, is a usage error, not a
// silent time in the future. report compliance's --from and --to parse
// the same way.
func TestAuditLogDurations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	for _, since := range []string{"90d", "1y", "1y6m", "24h", "90m"} {
		if got := len(e.auditLog("--since", since).Records); got != 1 {
			t.Errorf("audit log --since %s: %d records, want 1 (the init)", since, got)
		}
	}
	if got := len(e.auditLog("--until", "1d").Records); got != 0 {
		t.Errorf("audit log --until 1d: %d records, want 0", got)
	}
	for _, args := range [][]string{{"audit", "log", "--until", "-5h"}, {"audit", "log", "--since", "-1h"}, {"report", "compliance", "--to", "-24h"}, {"audit", "log", "--since", "7w"}} {
		r := e.run(args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, args[len(args)-1]) {
			t.Errorf("%v: exit %d, want %d naming the value\n%s%s", args, r.code, exitUsage, r.stdout, r.stderr)
		}
	}
	if r := e.run("report", "compliance", "--from", "90d"); r.code != 0 && r.code != 1 {
		t.Errorf("report compliance --from 90d: exit %d\n%s", r.code, r.stderr)
	}
}

// TestAuditVerifyForeignCheckpoint: a checkpoint of another repository's
// log fails verify (exit 1) with what it is, and the error does not
// blame the log, which verifies.
func TestAuditVerifyForeignCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	other := newEnv(t)
	other.must("init")
	cp := filepath.Join(e.dir, "other.cp")
	writeFile(t, cp, other.must("audit", "checkpoint"), 0o644)
	r := e.run("audit", "verify", "--checkpoint", cp)
	if r.code != exitError || !strings.Contains(r.stdout, "not of this repository's log") || strings.Contains(r.stderr, "does not verify") || !strings.Contains(r.stderr, "the audit log itself verifies") {
		t.Errorf("audit verify --checkpoint of another repository: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	vkey := strings.TrimSpace(e.must("audit", "key"))
	r = e.noPassphrase().run("audit", "verify", "--key", vkey, "--checkpoint", cp)
	if r.code != exitError || !strings.Contains(r.stdout, "no verifier key given for that log") || !strings.Contains(r.stderr, "the audit log itself verifies") {
		t.Errorf("audit verify --key --checkpoint of another repository: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestAuditVerifyNoPassphraseHint: an auditor without the passphrase who
// forgets --key is told to give the verifier key, not only to find a
// passphrase they do not have.
func TestAuditVerifyNoPassphraseHint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	for _, cmd := range []string{"verify", "checkpoint"} {
		r := e.noPassphrase().run("audit", cmd)
		if r.code != exitError || !strings.Contains(r.stderr, "no passphrase") || !strings.Contains(r.stderr, "--key") {
			t.Errorf("audit %s without passphrase or key: exit %d\n%s", cmd, r.code, r.stderr)
		}
	}
}

// TestAuditVerifyProofClaims: a report whose cited records were edited to
// say something else (a failed restore made a success) still carries
// valid inclusion proofs, which the verifier key alone cannot tell from
// the truth; with the passphrase, 'audit verify --proof' opens the cited
// records and refuses the report.
func TestAuditVerifyProofClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	if r := e.run("restore", "deadbeef", "--target", filepath.Join(e.dir, "out")); r.code != exitError {
		t.Fatalf("restore of a missing snapshot: exit %d", r.code)
	}
	cfg := filepath.Join(e.dir, "nestguard.toml")
	writeFile(t, cfg, "", 0o600)
	e.report(cfg)
	file := filepath.Join(e.dir, "report.json")
	if out := e.must("audit", "verify", "--proof", file); !strings.Contains(out, "what the reports say of each is what the record says") {
		t.Errorf("audit verify --proof with the passphrase:\n%s", out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	edited := 0
	for _, r := range doc["audit"].(map[string]any)["records"].([]any) {
		if rec := r.(map[string]any); rec["command"] == "restore" {
			rec["outcome"] = "success"
			edited++
		}
	}
	if edited != 1 {
		t.Fatalf("the report cites %d restore records, want 1", edited)
	}
	b, _ = json.Marshal(doc)
	altered := filepath.Join(e.dir, "altered.json")
	writeFile(t, altered, string(b), 0o644)
	r := e.run("audit", "verify", "--proof", altered)
	if r.code != exitError || !strings.Contains(r.stdout, "record 1") || !strings.Contains(r.stdout, "outcome") {
		t.Errorf("audit verify --proof of an altered report, with the passphrase: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestAuditCopyWitnessesRollback: the destination of copies holds the
// source's log as it was. When the source's newest audit entries are
// deleted and its log grows again (a rollback, or a rewritten history),
// the next copy says so and exits 1, still copies the snapshots (the
// second region is not held hostage by the audit log), and keeps the
// history it had: it still verifies with the source's key, and is not
// mixed with the new one.
func TestAuditCopyWitnessesRollback(t *testing.T) {
	t.Parallel()
	src := newEnv(t)
	src.must("init")
	data := filepath.Join(src.dir, "data")
	os.MkdirAll(data, 0o755)
	writeFile(t, filepath.Join(data, "f"), "one", 0o644)
	src.must("backup", data)
	skey := strings.TrimSpace(src.must("audit", "key"))
	dst := newEnv(t)
	dst.must("init")
	dst.extraEnv = []string{"NESTGUARD_FROM_PASSWORD=" + src.pass}
	dst.must("copy", "--from-repo", src.repo, "--all")

	entries, _ := filepath.Glob(filepath.Join(src.repo, "audit", "*-*"))
	slices.Sort(entries)
	if len(entries) != 3 {
		t.Fatalf("%d source entries, want 3 (init, backup, copy)", len(entries))
	}
	for _, p := range entries[1:] {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(data, "f"), "two", 0o644)
	src.must("backup", data)
	src.must("snapshots")

	r := dst.run("copy", "--from-repo", src.repo, "--all")
	if r.code != exitError || !strings.Contains(r.stderr, "rolled back") || !strings.Contains(r.stdout, "1 copied") {
		t.Errorf("copy from a source whose audit log was rolled back: exit %d, want 1 with the new snapshot copied\n%s%s", r.code, r.stdout, r.stderr)
	}
	out := dst.noPassphrase().must("audit", "verify", "--key", skey)
	if !strings.Contains(out, "2 records in 2 entries") {
		t.Errorf("the destination's copy of the source's log:\n%s", out)
	}
}

// TestAuditVerifyKeyFileWithPlus: --key names a file even when its name
// has a '+' (as verifier keys do): an existing file is read, not parsed
// as a key.
func TestAuditVerifyKeyFileWithPlus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	file := filepath.Join(e.dir, "audit+2026.pub")
	writeFile(t, file, e.must("audit", "key"), 0o644)
	e.noPassphrase().must("audit", "verify", "--key", file)
}
