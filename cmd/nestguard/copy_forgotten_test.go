package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopyNewerThanLastKeepsForgottenForgotten: 'copy --all' copies again
// every snapshot the destination forgot, undoing its retention (found by
// a hostile test, and documented); with --newer-than-last the forgotten
// ones stay forgotten, are counted as older than the last copy, and new
// snapshots of the source are still copied.
func TestCopyNewerThanLastKeepsForgottenForgotten(t *testing.T) {
	t.Parallel()
	src := newEnv(t)
	dst := newEnv(t)
	dir := filepath.Join(src.dir, "src")
	os.MkdirAll(dir, 0o755)
	src.must("init")
	backup := func(seed uint64) {
		writeRandom(t, filepath.Join(dir, "f"), 256<<10, seed)
		src.must("backup", dir)
	}
	for i := range 3 {
		backup(4690 + uint64(i))
	}
	dst.must("init")
	dst.extraEnv = append(dst.extraEnv, "NESTGUARD_FROM_PASSWORD="+src.pass)
	dst.must("copy", "--from-repo", src.repo, "--all", "--newer-than-last")
	dst.must("forget", "--keep-last", "1")
	ids := src.snapshotIDs()
	if got := copiedFrom(t, src, dst); strings.Join(got, ",") != ids[2] {
		t.Fatalf("after forget --keep-last 1 the destination holds copies of %v", got)
	}

	out := dst.must("copy", "--from-repo", src.repo, "--all", "--newer-than-last", "--json")
	var res struct {
		Copied []any    `json:"copied"`
		Older  []string `json:"older_than_last_copy"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("copy --json: %v\n%s", err, out)
	}
	if len(res.Copied) != 0 || strings.Join(res.Older, ",") != ids[0]+","+ids[1] {
		t.Errorf("copy --newer-than-last after the destination forgot two: %s", out)
	}
	if got := copiedFrom(t, src, dst); strings.Join(got, ",") != ids[2] {
		t.Errorf("copy --newer-than-last brought back what the destination forgot: copies of %v", got)
	}

	backup(4699)
	ids = src.snapshotIDs()
	if out := dst.must("copy", "--from-repo", src.repo, "--all", "--newer-than-last"); !strings.Contains(out, "2 older than the last copy") {
		t.Errorf("copy --newer-than-last does not count what it left out:\n%s", out)
	}
	if got := copiedFrom(t, src, dst); strings.Join(got, ",") != ids[2]+","+ids[3] {
		t.Errorf("copy --newer-than-last with a new source snapshot: copies of %v, want %v", got, ids[2:])
	}

	// Without it, what the destination forgot comes back (documented).
	dst.must("copy", "--from-repo", src.repo, "--all")
	if got := copiedFrom(t, src, dst); len(got) != 4 {
		t.Errorf("copy --all: copies of %v, want all 4 of the source's", got)
	}
}
