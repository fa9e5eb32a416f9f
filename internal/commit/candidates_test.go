package commit_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/candidates"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// stored is a repository with a snapshot's worth of blobs stored by an
// earlier run: a file's data blob and the tree naming it, in one pack.
type stored struct {
	be   backend.Backend
	data []byte
	blob id.ID // the data blob
	tree id.ID // a tree with one file of that blob
	pack id.ID // the pack holding both
}

func newStored(t *testing.T) *stored { return newStoredOn(t, mem.New()) }

func newStoredOn(t *testing.T, be backend.Backend) *stored {
	t.Helper()
	ctx := context.Background()
	s := &stored{be: be, data: []byte("the content of a file an earlier backup stored")}
	r := repotest.New(t, repotest.Backend(s.be))
	var err error
	if s.blob, _, err = r.SaveBlob(ctx, index.DataBlob, s.data); err != nil {
		t.Fatal(err)
	}
	s.tree = repotest.SaveTree(t, r, &tree.Node{Name: "f", Type: tree.File, Size: uint64(len(s.data)), Content: []id.ID{s.blob}})
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e, _ := r.Index().Lookup(s.blob)
	te, _ := r.Index().Lookup(s.tree)
	if e.Pack != te.Pack {
		t.Fatal("blob and tree in different packs")
	}
	s.pack = e.Pack
	return s
}

// mark saves a deletion-candidate record naming the stored pack, due
// after the given time from now.
func (s *stored) mark(t *testing.T, r *repository.Repository, after time.Duration) {
	t.Helper()
	now := time.Now()
	if err := candidates.Save(context.Background(), r, &candidates.Record{Time: now, NotBefore: now.Add(after), Packs: []id.ID{s.pack}}); err != nil {
		t.Fatal(err)
	}
}

// reuse begins a writer with o on the stored repository and has it reuse
// the stored data blob (SaveBlob finds it known).
func (s *stored) reuse(t *testing.T, o commit.Options) (*repository.Repository, *commit.Step) {
	t.Helper()
	ctx := context.Background()
	r := repotest.Open(t, s.be)
	step, err := commit.Begin(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, known, err := r.SaveBlob(ctx, index.DataBlob, s.data); err != nil || !known {
		t.Fatalf("SaveBlob: known %v, %v", known, err)
	}
	return r, step
}

func (s *stored) snapshot() *snapshot.Snapshot {
	return &snapshot.Snapshot{Time: time.Now().UTC(), Kind: snapshot.KindFiles, Paths: []string{"/x"}, Tree: s.tree}
}

// outside reports whether bid has a location in a pack other than the
// stored one that the storage still holds.
func (s *stored) outside(t *testing.T, r *repository.Repository, bid id.ID) bool {
	t.Helper()
	for _, e := range r.Index().Locations(bid) {
		if e.Pack == s.pack {
			continue
		}
		if _, err := s.be.Stat(context.Background(), backend.Handle{Type: backend.PackFile, Name: e.Pack.String()}); err == nil {
			return true
		}
	}
	return false
}

// TestBeginAvoidsCandidatePacks: a writer that starts after a prune
// marked a pack does not deduplicate against it, and with
// UnsafeIgnoreCandidates it does.
func TestBeginAvoidsCandidatePacks(t *testing.T) {
	ctx := context.Background()
	s := newStored(t)
	s.mark(t, repotest.Open(t, s.be), 24*time.Hour)
	for _, unsafe := range []bool{false, true} {
		r := repotest.Open(t, s.be)
		if _, err := commit.Begin(ctx, r, commit.Options{UnsafeIgnoreCandidates: unsafe}); err != nil {
			t.Fatal(err)
		}
		_, known, err := r.SaveBlob(ctx, index.DataBlob, s.data)
		if err != nil {
			t.Fatal(err)
		}
		if known != unsafe {
			t.Errorf("unsafe %v: SaveBlob of a blob only in a candidate pack found it known: %v", unsafe, known)
		}
	}
}

// TestSaveStoresAgainForNewDueRecord: a record that appeared while the
// writer ran, already due, names the pack of blobs the snapshot reused:
// Save stores them again in a new pack before saving the snapshot, so a
// prune that deletes the pack without seeing the snapshot loses nothing.
// A record not due yet costs nothing; with UnsafeIgnoreCandidates nothing
// is checked.
func TestSaveStoresAgainForNewDueRecord(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		after  time.Duration // the record's NotBefore from now
		unsafe bool
		again  bool // the blobs are stored again
	}{
		{"due", time.Second, false, true},
		{"due within the skew", commit.Skew - time.Minute, false, true},
		{"not due", commit.Skew + time.Hour, false, false},
		{"unsafe", time.Second, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStored(t)
			// The run reuses both blobs, then a prune marks their pack.
			r, step := s.reuse(t, commit.Options{UnsafeIgnoreCandidates: tc.unsafe})
			s.mark(t, r, tc.after)
			sn := s.snapshot()
			c, err := step.Save(ctx, sn)
			if err != nil || sn.ID.IsNull() {
				t.Fatalf("Save: %v", err)
			}
			fresh := repotest.Open(t, s.be)
			for _, bid := range []id.ID{s.blob, s.tree} {
				if got := s.outside(t, fresh, bid); got != tc.again {
					t.Errorf("blob %s stored outside the marked pack: %v, want %v", bid.Short(), got, tc.again)
				}
			}
			if want := int64(0); tc.again {
				if c.Blobs != 2 {
					t.Errorf("counters %+v: want the 2 blobs stored again", c)
				}
			} else if c.Blobs != want {
				t.Errorf("counters %+v: want nothing stored", c)
			}
		})
	}
}

// clocked is a store whose clock is shift from this host's
// (backend.Clock), telling it to the second as S3 does.
type clocked struct {
	backend.Backend
	shift time.Duration
	exact bool // tell the time to the nanosecond, not rounded down
}

func (c *clocked) Unwrap() backend.Backend { return c.Backend }

func (c *clocked) StoreTime(context.Context) (time.Time, error) {
	if c.exact {
		return time.Now().Add(c.shift), nil
	}
	return time.Now().Add(c.shift).Truncate(time.Second), nil
}

// TestSaveWarnsOfClockOff: a writer warns that its host's clock is off
// the store's only when it is, by more than Skew, whichever way: the
// second added to the store's time for its rounding makes its time
// later for judging records, but is no evidence that the host is behind.
func TestSaveWarnsOfClockOff(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		shift time.Duration // the store's clock from this host's
		warn  string        // "" for none
	}{
		{commit.Skew - 500*time.Millisecond, ""},
		{commit.Skew + 3*time.Second, "behind"},
		{-commit.Skew + 500*time.Millisecond, ""},
		{-commit.Skew - 3*time.Second, "ahead of"},
	} {
		s := newStoredOn(t, &clocked{Backend: mem.New(), shift: tc.shift, exact: true})
		var logged bytes.Buffer
		kdf := crypto.FastKDFParamsForTests()
		r, err := repository.Open(ctx, s.be, []byte(repotest.Password), repository.Options{KDF: &kdf, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		step, err := commit.Begin(ctx, r, commit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := step.Save(ctx, s.snapshot()); err != nil {
			t.Fatalf("Save: %v", err)
		}
		got := logged.String()
		switch {
		case tc.warn == "" && strings.Contains(got, "clock"):
			t.Errorf("store %v from this host: warned\n%s", tc.shift, got)
		case tc.warn != "" && (!strings.Contains(got, "clock is ") || !strings.Contains(got, tc.warn)):
			t.Errorf("store %v from this host: no warning saying %q\n%s", tc.shift, tc.warn, got)
		}
	}
}

// TestSaveJudgesRecordsByStoreTime: a record that a prune wrote while
// the writer ran, due by the store's clock (which the prune's is checked
// against) but not yet by this host's, which is behind: the blobs are
// stored again all the same. A host clock ahead of the store's stays the
// one that counts.
func TestSaveJudgesRecordsByStoreTime(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		shift time.Duration // the store's clock from this host's
		after time.Duration // the record's NotBefore from this host's now
		again bool
	}{
		{"host on time, not due", 0, commit.Skew + 4*time.Minute, false},
		{"host 10 minutes behind, due by the store", 10 * time.Minute, commit.Skew + 4*time.Minute, true},
		{"host 10 minutes ahead, due by the host", -10 * time.Minute, commit.Skew - time.Minute, true},
		{"host 10 minutes ahead, not due", -10 * time.Minute, commit.Skew + 4*time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStoredOn(t, &clocked{Backend: mem.New(), shift: tc.shift})
			r, step := s.reuse(t, commit.Options{})
			s.mark(t, r, tc.after)
			if _, err := step.Save(ctx, s.snapshot()); err != nil {
				t.Fatalf("Save: %v", err)
			}
			fresh := repotest.Open(t, s.be)
			if got := s.outside(t, fresh, s.blob); got != tc.again {
				t.Errorf("blob stored outside the marked pack: %v, want %v", got, tc.again)
			}
		})
	}
}

// TestSaveFailsWhenBlobGone: when the marked pack is already deleted, the
// blobs cannot be stored again: Save fails, naming why, and saves no
// snapshot (never one that points at a missing blob).
func TestSaveFailsWhenBlobGone(t *testing.T) {
	ctx := context.Background()
	s := newStored(t)
	r := repotest.Open(t, s.be)
	step, err := commit.Begin(ctx, r, commit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.mark(t, r, 0)
	if err := s.be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: s.pack.String()}); err != nil {
		t.Fatal(err)
	}
	sn := s.snapshot()
	_, err = step.Save(ctx, sn)
	if err == nil || !sn.ID.IsNull() || !strings.Contains(err.Error(), "no snapshot saved") || !strings.Contains(err.Error(), s.tree.Short()) {
		t.Fatalf("Save with the needed pack deleted: %v, id %v", err, sn.ID)
	}
	if ids, err := r.ListObjects(ctx, backend.SnapshotFile); err != nil || len(ids) != 0 {
		t.Fatalf("snapshots stored: %v, %v", ids, err)
	}
}

// TestCopyStepChecksLaterSnapshots: once a Save found a due record, the
// later Saves of the same step (a copy's next snapshots, whose blobs may
// have been decided before) check their snapshots too.
func TestCopyStepChecksLaterSnapshots(t *testing.T) {
	ctx := context.Background()
	s := newStored(t)
	r := repotest.Open(t, s.be)
	step, err := commit.Begin(ctx, r, commit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := r.SaveBlob(ctx, index.DataBlob, []byte("a first snapshot's own blob"))
	if err != nil {
		t.Fatal(err)
	}
	s.mark(t, r, 0)
	first := &snapshot.Snapshot{Time: time.Now().UTC(), Kind: snapshot.KindFiles, Paths: []string{"/a"},
		Tree: repotest.SaveTree(t, r, &tree.Node{Name: "g", Type: tree.File, Size: 27, Content: []id.ID{other}})}
	if _, err := step.Save(ctx, first); err != nil {
		t.Fatal(err)
	}
	if s.outside(t, r, s.blob) {
		t.Fatal("a blob the first snapshot does not need was stored again")
	}
	// The second snapshot reuses the marked pack's blobs (decided before
	// the first Save, as a copy's cached mappings are).
	sn := s.snapshot()
	if _, err := step.Save(ctx, sn); err != nil {
		t.Fatal(err)
	}
	if !s.outside(t, r, s.blob) || !s.outside(t, r, s.tree) {
		t.Error("the second snapshot's blobs were not stored again")
	}
}

// TestSaveNoticesRecordThatCameAndWent: during a long run a prune marked
// the pack of blobs the run reused, and a later prune deleted it (index
// object first, then the pack) and removed the record, all before Save:
// Save sees no record, but finds the index object gone and the pack with
// it, and fails rather than save a snapshot that points at nothing.
func TestSaveNoticesRecordThatCameAndWent(t *testing.T) {
	ctx := context.Background()
	s := newStored(t)
	r, step := s.reuse(t, commit.Options{})
	// The prunes, as another process.
	p := repotest.Open(t, s.be)
	s.mark(t, p, 0)
	idx, err := p.ListObjects(ctx, backend.IndexFile)
	if err != nil || len(idx) != 1 {
		t.Fatalf("index objects %v, %v", idx, err)
	}
	recs, _, err := candidates.List(ctx, p)
	if err != nil || len(recs) != 1 {
		t.Fatalf("records %v, %v", recs, err)
	}
	for _, h := range []backend.Handle{
		{Type: backend.IndexFile, Name: idx[0].String()},
		{Type: backend.PackFile, Name: s.pack.String()},
		{Type: backend.CandidateFile, Name: recs[0].ID.String()},
	} {
		if err := s.be.Remove(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	sn := s.snapshot()
	_, err = step.Save(ctx, sn)
	if err == nil || !sn.ID.IsNull() || !strings.Contains(err.Error(), "no snapshot saved") {
		t.Fatalf("Save after the reused pack was deleted: %v, id %v", err, sn.ID)
	}
	if ids, err := r.ListObjects(ctx, backend.SnapshotFile); err != nil || len(ids) != 0 {
		t.Fatalf("snapshots stored: %v, %v", ids, err)
	}
}

// TestBeginLeavesMarkedOrphans: a pack no index object lists that a
// record names (a prune unindexed it before deleting it) is not indexed
// by Begin, with UnsafeIgnoreCandidates too.
func TestBeginLeavesMarkedOrphans(t *testing.T) {
	ctx := context.Background()
	s := newStored(t)
	r := repotest.Open(t, s.be)
	s.mark(t, r, 0)
	idx, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil || len(idx) != 1 {
		t.Fatalf("index objects %v, %v", idx, err)
	}
	if err := s.be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: idx[0].String()}); err != nil {
		t.Fatal(err)
	}
	for _, unsafe := range []bool{false, true} {
		if _, err := commit.Begin(ctx, repotest.Open(t, s.be), commit.Options{UnsafeIgnoreCandidates: unsafe}); err != nil {
			t.Fatal(err)
		}
		if repotest.Open(t, s.be).Index().Has(s.blob) {
			t.Fatalf("unsafe %v: Begin indexed a pack a deletion-candidate record names", unsafe)
		}
	}
}
