package commit_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/retention/locktest"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// newSnapshot saves a data blob (not flushed: it sits in the open pack)
// and returns a snapshot naming it as its tree, and the blob.
func newSnapshot(t *testing.T, r *repository.Repository, data string) (*snapshot.Snapshot, id.ID) {
	t.Helper()
	bid, _, err := r.SaveBlob(context.Background(), index.DataBlob, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return &snapshot.Snapshot{Time: time.Now().UTC(), Kind: snapshot.KindFiles, Paths: []string{"/x"}, Tree: bid,
		Summary: &snapshot.Summary{Files: 1}}, bid
}

// TestSaveOrder: the snapshot is saved only once what it references is
// durable and indexed (a new process finds it); retention comes after the
// save, the hook after the retention; counters are what each snapshot's
// own run added.
func TestSaveOrder(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r := repotest.New(t, repotest.Backend(be), repotest.ObjectLock(&repository.ObjectLock{Mode: repository.LockCompliance, MinRetention: time.Hour}))
	var steps []string
	o := commit.Options{
		Retain: func(ctx context.Context, repo *repository.Repository, sn *snapshot.Snapshot) error {
			if _, err := be.Stat(ctx, backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}); err != nil {
				t.Errorf("retention before the snapshot was saved: %v", err)
			}
			steps = append(steps, "retain "+sn.Paths[0])
			return nil
		},
		AfterCommit: func(_ context.Context, c commit.Committed) error {
			if c.Retention != nil {
				t.Errorf("hook told of a retention error: %v", c.Retention)
			}
			steps = append(steps, "after "+c.Snapshot.Paths[0])
			return nil
		},
	}
	step, err := commit.Begin(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	sn, bid := newSnapshot(t, r, "first")
	c, err := step.Save(ctx, sn)
	if err != nil || sn.ID.IsNull() {
		t.Fatalf("Save: %v, id %v", err, sn.ID)
	}
	if c.Blobs != 1 || sn.Summary.BlobsNew != 1 || sn.Summary.DataAdded != int64(len("first")) || sn.Summary.DataStored != c.Stored || c.Stored == 0 {
		t.Errorf("counters %+v, summary %+v", c, sn.Summary)
	}
	if sn.Summary.End.IsZero() || sn.Summary.Files != 1 {
		t.Errorf("summary %+v", sn.Summary)
	}
	// What a new process sees: the snapshot and the blob it references.
	fresh := repotest.Open(t, be)
	if _, err := snapshot.Load(ctx, fresh, sn.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.LoadBlob(ctx, bid, nil); err != nil {
		t.Errorf("snapshot saved, but the blob it references is not durable and indexed: %v", err)
	}

	// A second snapshot of the same step counts only what it added.
	sn2 := &snapshot.Snapshot{Time: time.Now().UTC(), Kind: snapshot.KindFiles, Paths: []string{"/y"}, Tree: bid}
	if c, err := step.Save(ctx, sn2); err != nil || c != (commit.Counters{}) || sn2.Summary == nil || sn2.Summary.BlobsNew != 0 {
		t.Errorf("second Save: %+v, %v, summary %+v", c, err, sn2.Summary)
	}
	if want := []string{"retain /x", "after /x", "retain /y", "after /y"}; !slices.Equal(steps, want) {
		t.Errorf("steps %q, want %q", steps, want)
	}
}

// TestSaveRetentionFails: the snapshot stays saved, the error says so and
// is a *RetentionError, and the hook is told.
func TestSaveRetentionFails(t *testing.T) {
	ctx := context.Background()
	r := repotest.New(t, repotest.Backend(locktest.New(true)), repotest.ObjectLock(&repository.ObjectLock{Mode: repository.LockGovernance, MinRetention: time.Hour}))
	errRetain := errors.New("retention refused")
	var told error
	step, err := commit.Begin(ctx, r, commit.Options{
		Retain: func(context.Context, *repository.Repository, *snapshot.Snapshot) error { return errRetain },
		AfterCommit: func(_ context.Context, c commit.Committed) error {
			told = c.Retention
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := newSnapshot(t, r, "data")
	_, err = step.Save(ctx, sn)
	var re *commit.RetentionError
	if !errors.As(err, &re) || re.Snapshot != sn || !errors.Is(err, errRetain) || sn.ID.IsNull() || !errors.Is(told, errRetain) {
		t.Fatalf("Save: %v (hook told %v), id %v", err, told, sn.ID)
	}
	if _, err := snapshot.Load(ctx, r, sn.ID); err != nil {
		t.Errorf("snapshot not saved: %v", err)
	}
	// Retain finishes it later (here with a Retain that succeeds: the
	// snapshot's tree is not a real tree).
	if err := commit.Retain(ctx, r, sn, commit.Options{Retain: commit.NoRetention}); err != nil {
		t.Errorf("Retain again: %v", err)
	}
}

// TestSaveWithoutObjectLock: no retention is applied; a copy keeps the
// summary of the backup it copies.
func TestSaveWithoutObjectLock(t *testing.T) {
	ctx := context.Background()
	r := repotest.New(t)
	called := 0
	step, err := commit.Begin(ctx, r, commit.Options{
		Retain: func(context.Context, *repository.Repository, *snapshot.Snapshot) error { called++; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := newSnapshot(t, r, "copied")
	sum := *sn.Summary
	sn.CopiedFrom = "source/snapshot"
	c, err := step.Save(ctx, sn)
	if err != nil || called != 0 || c.Blobs != 1 || *sn.Summary != sum {
		t.Errorf("Save: %+v, %v, retain called %d times, summary %+v", c, err, called, sn.Summary)
	}
}

// TestBeginCleansStaleTemp: Begin removes the temporary files a killed
// writer left more than a day ago, and keeps a recent one.
func TestBeginCleansStaleTemp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := repotest.New(t, repotest.Backend(be))
	stale, fresh := filepath.Join(dir, "data", "ab", ".tmp-stale"), filepath.Join(dir, "snapshots", ".tmp-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("left by a killed writer"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := commit.Begin(context.Background(), r, commit.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent temporary file removed: %v", err)
	}
}

// TestSaveRetainsByDefault: a writer that sets no Options still leaves its
// snapshot retained in an Object Lock repository (a library caller, such
// as the coming server, cannot forget it).
func TestSaveRetainsByDefault(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r := repotest.New(t, repotest.Backend(be), repotest.ObjectLock(&repository.ObjectLock{Mode: repository.LockCompliance, MinRetention: time.Hour}))
	empty, err := tree.Encode(&tree.Tree{})
	if err != nil {
		t.Fatal(err)
	}
	tid, _, err := r.SaveBlob(ctx, index.TreeBlob, empty)
	if err != nil {
		t.Fatal(err)
	}
	step, err := commit.Begin(ctx, r, commit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Dated later than now, so that what its upload was given does not
	// cover it: only the commit step's retention can.
	sn := &snapshot.Snapshot{Time: time.Now().UTC().Add(30 * time.Minute), Kind: snapshot.KindFiles, Paths: []string{"/x"}, Tree: tid}
	if _, err := step.Save(ctx, sn); err != nil {
		t.Fatal(err)
	}
	loc, ok := r.Index().Lookup(tid)
	if !ok {
		t.Fatal("tree not indexed")
	}
	want := sn.Time.Add(time.Hour)
	ret, err := be.Retention(ctx, backend.Handle{Type: backend.PackFile, Name: loc.Pack.String()})
	if err != nil || ret.Until.Before(want) {
		t.Errorf("the tree's pack is retained until %v (%v), want >= %v", ret.Until, err, want)
	}
}

// TestSaveOnceKeepsOneOfConcurrentCopies: SaveOnce saves nothing when the
// check just before saving finds the snapshot there; when the check just
// after saving finds one saved at the same time, the one with the smaller
// ID is kept: the writer whose own is the larger removes it (before any
// retention), the other keeps its own.
func TestSaveOnceKeepsOneOfConcurrentCopies(t *testing.T) {
	ctx := context.Background()
	r := repotest.New(t)
	step, err := commit.Begin(ctx, r, commit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exists := func(sid id.ID) bool {
		_, err := r.Backend().Stat(ctx, backend.Handle{Type: backend.SnapshotFile, Name: sid.String()})
		return err == nil
	}

	// Found before saving: nothing saved.
	there, _ := newSnapshot(t, r, "there")
	if _, err := step.Save(ctx, there); err != nil {
		t.Fatal(err)
	}
	sn, _ := newSnapshot(t, r, "there")
	_, err = step.SaveOnce(ctx, sn, func(context.Context, *snapshot.Snapshot) (*snapshot.Snapshot, error) { return there, nil })
	if de := (*commit.DuplicateError)(nil); !errors.As(err, &de) || de.Existing != there || !sn.ID.IsNull() {
		t.Fatalf("SaveOnce with the snapshot there: %v, id %v", err, sn.ID)
	}

	// Saved at the same time by another writer: both orders of the IDs.
	var removed, kept bool
	for i := 0; i < 40 && !(removed && kept); i++ {
		sn, _ := newSnapshot(t, r, "same")
		var other *snapshot.Snapshot
		var own id.ID // sn's ID once saved
		calls := 0
		_, err := step.SaveOnce(ctx, sn, func(ctx context.Context, mine *snapshot.Snapshot) (*snapshot.Snapshot, error) {
			if calls++; calls == 1 {
				return nil, nil // the other writer has not saved yet
			}
			own = mine.ID
			other = &snapshot.Snapshot{Time: time.Now().UTC(), Kind: snapshot.KindFiles, Paths: []string{"/other", time.Now().String()}, Tree: mine.Tree}
			if err := snapshot.Save(ctx, r, other); err != nil {
				return nil, err
			}
			return other, nil
		})
		saved := sn.ID
		switch de := (*commit.DuplicateError)(nil); {
		case errors.As(err, &de):
			removed = true
			if de.Existing != other || !saved.IsNull() || exists(own) || string(other.ID[:]) > string(own[:]) {
				t.Fatalf("removed %v (still stored: %v; id left %v), keeping %v", own.Short(), exists(own), saved, de.Existing.ID.Short())
			}
		case err != nil:
			t.Fatal(err)
		default:
			kept = true
			if string(other.ID[:]) < string(saved[:]) || !exists(saved) {
				t.Fatalf("kept %v although %v is smaller, or it is not stored", saved.Short(), other.ID.Short())
			}
		}
	}
	if !removed || !kept {
		t.Errorf("40 saves: removed %v, kept %v", removed, kept)
	}
}
