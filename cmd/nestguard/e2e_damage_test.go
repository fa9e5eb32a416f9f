package main

// End-to-end tests for damaged repository objects (issue 16): a snapshot
// object that cannot be read, a damaged index object, and what verify
// reports while other processes write.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// flipByte flips one bit of the byte at the middle of file p.
func flipByte(t *testing.T, p string) {
	t.Helper()
	os.Chmod(p, 0o600)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o400); err != nil {
		t.Fatal(err)
	}
}

// snapshotIDs returns the IDs of the repository's snapshots, oldest first.
func (e *env) snapshotIDs() []string {
	e.t.Helper()
	var snaps []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.must("snapshots", "--json")), &snaps); err != nil {
		e.t.Fatal(err)
	}
	ids := make([]string, len(snaps))
	for i, s := range snaps {
		ids[i] = s.ID
	}
	return ids
}

// TestLatestNeverSkipsUnreadableSnapshot: with the newest snapshot object
// damaged, 'latest' must choose nothing anywhere (it named the older one
// and restored it with exit 0), 'snapshots' must say so and exit 3, and the
// readable snapshot must still be reachable by its ID.
func TestLatestNeverSkipsUnreadableSnapshot(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f.txt"), []byte("old"), 0o644)
	e.must("init")
	e.must("backup", src)
	os.WriteFile(filepath.Join(src, "f.txt"), []byte("new"), 0o644)
	os.WriteFile(filepath.Join(src, "g.txt"), []byte("only in the newest"), 0o644)
	e.must("backup", src)
	ids := e.snapshotIDs()
	if len(ids) != 2 {
		t.Fatalf("%d snapshots", len(ids))
	}
	older, newest := ids[0], ids[1]
	flipByte(t, filepath.Join(e.repo, "snapshots", newest))

	other := newEnv(t)
	other.pass = e.pass
	other.extraEnv = []string{"NESTGUARD_FROM_PASSWORD=" + e.pass}
	other.must("init")
	for _, args := range [][]string{
		{"restore", "latest", "--target", filepath.Join(e.dir, "r1")},
		{"ls", "latest"},
		{"diff", older[:8], "latest"},
		{"hold", "add", "latest", "--case", "C-1", "--reason", "test", "--record-only"},
		{"backup", src, "--parent", "latest"},
		{"restore", newest[:8], "--target", filepath.Join(e.dir, "r2")},
	} {
		r := e.run(args...)
		if r.code == 0 || !strings.Contains(r.stderr, newest[:8]) {
			t.Errorf("nestguard %s with the newest snapshot unreadable: exit %d, want an error naming %s\n%s",
				strings.Join(args, " "), r.code, newest[:8], r.stderr)
		}
		if args[0] == "restore" && !strings.Contains(r.stderr, "nestguard snapshots") && !strings.Contains(r.stderr, "id") {
			t.Errorf("restore does not say how to choose another snapshot:\n%s", r.stderr)
		}
	}
	if r := other.run("copy", "--from", e.repo, "latest"); r.code == 0 || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("copy latest with the newest snapshot unreadable: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "r1")); err == nil {
		if n := countFiles(t, filepath.Join(e.dir, "r1")); n > 0 {
			t.Errorf("restore latest wrote %d files", n)
		}
	}

	r := e.run("snapshots")
	if r.code != 3 || !strings.Contains(r.stdout, older[:8]) || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("snapshots with one unreadable: exit %d, want 3 listing %s and naming %s\nstdout: %s\nstderr: %s",
			r.code, older[:8], newest[:8], r.stdout, r.stderr)
	}
	r = e.run("snapshots", "--json")
	if r.code != 3 || !strings.Contains(r.stdout, older) || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("snapshots --json with one unreadable: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// The readable snapshot by its ID, and a new backup (whose parent is
	// only a shortcut) still work.
	tgt := filepath.Join(e.dir, "r3")
	e.must("restore", older[:8], "--target", tgt)
	if b, _ := os.ReadFile(filepath.Join(tgt, src, "f.txt")); string(b) != "old" {
		t.Errorf("restore of %s: f.txt = %q", older[:8], b)
	}
	e.must("backup", src)
	r = e.run("verify")
	if r.code == 0 || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("verify with an unreadable snapshot: exit %d\n%s", r.code, r.stderr)
	}
}
