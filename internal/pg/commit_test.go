package pg

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/repository"
)

// testCommitStep: a base backup saves its snapshot through the commit
// step: the temporary files a killed writer left in the repository more
// than a day ago are removed, the hook sees the snapshot once, saved, and
// the summary counts what the commit step counted.
func testCommitStep(t *testing.T, c *archivedCluster) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	kdf := crypto.FastKDFParamsForTests()
	repo, err := repository.Init(ctx, be, []byte("test"), repository.InitOptions{Options: repository.Options{KDF: &kdf}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "data", "0f", ".tmp-killed")
	if err := os.MkdirAll(filepath.Dir(stale), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("left by a killed backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	c.also.Store(repo) // the backup's WAL goes to this repository too
	defer c.also.Store(nil)

	var seen []commit.Committed
	sn, _, err := Backup(ctx, repo, BackupOptions{DataDir: c.DataDir, DSN: c.DSN(), WALTimeout: time.Minute,
		Commit: commit.Options{AfterCommit: func(ctx context.Context, cm commit.Committed) error {
			if _, err := be.Stat(ctx, backend.Handle{Type: backend.SnapshotFile, Name: cm.Snapshot.ID.String()}); err != nil {
				t.Errorf("hook called before the snapshot was saved: %v", err)
			}
			seen = append(seen, cm)
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file kept by a base backup: %v", err)
	}
	s := sn.Summary
	if len(seen) != 1 || seen[0].Snapshot != sn || s.BlobsNew == 0 ||
		seen[0].Counters != (commit.Counters{Blobs: s.BlobsNew, Added: s.DataAdded, Stored: s.DataStored}) {
		t.Errorf("hook saw %+v; the backup saved %s with %+v", seen, sn.ID.Short(), s)
	}
}
