package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
