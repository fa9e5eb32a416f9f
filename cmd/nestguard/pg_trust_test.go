package main

// End-to-end tests of what issue 16 found in base backups and
// point-in-time recovery: a backup of the wrong data directory, restore
// targets the WAL cannot reach, and logs kept in the data directory.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/pgtest"
)

// TestPGBackupWrongPGData: a --pgdata that is not the data directory of
// the server --dsn reaches (an earlier copy of the same cluster, another
// cluster's directory) is refused before anything is stored, naming both
// directories; the server's own directory, even through a symlink, is
// backed up.
func TestPGBackupWrongPGData(t *testing.T) {
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
