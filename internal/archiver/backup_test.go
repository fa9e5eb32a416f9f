package archiver

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// TestBackupCommits: Backup saves its snapshot through the commit step
// (the hook sees each one), and a second backup by the same process (one
// Repository) records in its summary only what it added, as a PostgreSQL
// base backup and a copy do; it used to record everything the process had
// stored.
func TestBackupCommits(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	for i, size := range []int{300_000, 200_000, 10} {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(j*7 + i)
		}
		if err := os.WriteFile(filepath.Join(src, string(rune('a'+i))), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var seen []commit.Committed
	o := BackupOptions{Commit: commit.Options{AfterCommit: func(_ context.Context, c commit.Committed) error {
		seen = append(seen, c)
		return nil
	}}}
	var snaps []*snapshot.Snapshot
	for range 2 {
		sn, ferrs, err := Backup(ctx, repo, []string{src}, o)
		if err != nil || len(ferrs) > 0 {
			t.Fatalf("backup: %v %v", err, ferrs)
		}
		snaps = append(snaps, sn)
	}
	first, second := snaps[0].Summary, snaps[1].Summary
	if first.BlobsNew == 0 || first.DataAdded < 500_000 || first.DataStored == 0 {
		t.Errorf("first backup: %+v", first)
	}
	// Only trees of the directories above src may change (their times).
	if second.BlobsNew >= first.BlobsNew || second.DataAdded > 10_000 || second.DataStored > 10_000 {
		t.Errorf("second backup of unchanged files added %d blobs, %d bytes (%d stored): the first backup's are counted again",
			second.BlobsNew, second.DataAdded, second.DataStored)
	}
	if len(seen) != 2 {
		t.Fatalf("commit hook saw %d snapshots, want 2", len(seen))
	}
	for i, c := range seen {
		s := snaps[i].Summary
		if c.Snapshot.ID != snaps[i].ID || c.Counters != (commit.Counters{Blobs: s.BlobsNew, Added: s.DataAdded, Stored: s.DataStored}) {
			t.Errorf("hook saw %s with %+v; backup %d is %s with %+v", c.Snapshot.ID.Short(), c.Counters, i, snaps[i].ID.Short(), s)
		}
	}
}
