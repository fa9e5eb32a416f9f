package candidates

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
)

func TestSaveList(t *testing.T) {
	ctx := context.Background()
	r := repotest.New(t)
	now := time.Now().UTC().Truncate(time.Second)
	p1, p2 := id.Hash([]byte("a")), id.Hash([]byte("b"))
	second := &Record{Time: now, NotBefore: now.Add(time.Hour), Packs: []id.ID{p2, p1, p2}}
	first := &Record{Time: now.Add(-time.Hour), NotBefore: now, Packs: []id.ID{p1}}
	for _, rec := range []*Record{second, first} {
		if err := Save(ctx, r, rec); err != nil {
			t.Fatal(err)
		}
	}
	if len(second.Packs) != 2 {
		t.Errorf("packs not deduplicated: %v", second.Packs)
	}
	recs, damaged, err := List(ctx, r)
	if err != nil || len(damaged) != 0 {
		t.Fatal(err, damaged)
	}
	if len(recs) != 2 || recs[0].ID != first.ID || recs[1].ID != second.ID {
		t.Fatalf("records not listed oldest first: %+v", recs)
	}
	if set := Packs(recs); len(set) != 2 {
		t.Errorf("Packs = %v", set)
	}
}

// goneStore is a store whose ListObjects still lists the records in gone,
// which read as removed: a prune removed them between the listing and
// the reading.
type goneStore struct {
	*repository.Repository
	gone map[id.ID]bool
}

func (s goneStore) LoadObject(ctx context.Context, t backend.FileType, oid id.ID, v any) error {
	if s.gone[oid] {
		return fmt.Errorf("loading %s: %w", oid, fs.ErrNotExist)
	}
	return s.Repository.LoadObject(ctx, t, oid, v)
}

// TestListSkipsRemovedRecord: a record removed after the listing is left
// out, not an error that fails a backup.
func TestListSkipsRemovedRecord(t *testing.T) {
	ctx := context.Background()
	r := repotest.New(t)
	now := time.Now().UTC()
	kept := &Record{Time: now, NotBefore: now, Packs: []id.ID{id.Hash([]byte("a"))}}
	removed := &Record{Time: now, NotBefore: now, Packs: []id.ID{id.Hash([]byte("b"))}}
	for _, rec := range []*Record{kept, removed} {
		if err := Save(ctx, r, rec); err != nil {
			t.Fatal(err)
		}
	}
	recs, damaged, err := List(ctx, goneStore{r, map[id.ID]bool{removed.ID: true}})
	if err != nil || len(damaged) != 0 || len(recs) != 1 || recs[0].ID != kept.ID {
		t.Fatalf("List = %v, %v, %v; want the kept record only", recs, damaged, err)
	}
}

func TestRefusesBadRecords(t *testing.T) {
	ctx := context.Background()
	r := repotest.New(t)
	now := time.Now()
	for _, rec := range []*Record{
		{NotBefore: now, Packs: []id.ID{{1}}},
		{Time: now, NotBefore: now.Add(-time.Second), Packs: []id.ID{{1}}},
		{Time: now, NotBefore: now},
	} {
		if err := Save(ctx, r, rec); err == nil {
			t.Errorf("saved %+v", rec)
		}
	}
	// A record that authenticates but does not check is damaged, not fatal.
	if _, err := r.SaveObject(ctx, backend.CandidateFile, &Record{Time: now, NotBefore: now}); err != nil {
		t.Fatal(err)
	}
	recs, damaged, err := List(ctx, r)
	if err != nil || len(recs) != 0 || len(damaged) != 1 || !errors.Is(damaged[0], repository.ErrObjectCorrupted) {
		t.Fatalf("List = %v, %v, %v", recs, damaged, err)
	}
}
