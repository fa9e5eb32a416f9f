package repository

import (
	"context"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// savePack stores data as one blob in a pack of its own, flushed, and
// returns the blob and the pack.
func savePack(t *testing.T, r *Repository, data []byte) (bid, pack id.ID) {
	t.Helper()
	ctx := context.Background()
	bid, _, err := r.SaveBlob(ctx, index.DataBlob, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e, ok := r.Index().Lookup(bid)
	if !ok {
		t.Fatal("blob not indexed")
	}
	return bid, e.Pack
}

// TestCandidatePacksNotReused: a blob located only in a deletion-candidate
// pack is not deduplicated against: SaveBlob stores it again, in a new
// pack, and only then is it reusable. Without candidates nothing changes.
func TestCandidatePacksNotReused(t *testing.T) {
	ctx := context.Background()
	r, _ := newRepo(t)
	data := randBytes(7, 5000)
	bid, pack := savePack(t, r, data)
	if !r.Reusable(bid) || r.HasCandidatePacks() {
		t.Fatal("a blob in an ordinary pack is not reusable")
	}
	r.SetCandidatePacks(map[id.ID]struct{}{pack: {}})
	if r.Reusable(bid) {
		t.Fatal("a blob only in a candidate pack is reusable")
	}
	known, err := r.SaveBlobWithID(ctx, index.DataBlob, bid, data)
	if err != nil || known {
		t.Fatalf("SaveBlob of a blob only in a candidate pack: known %v, %v; want it stored again", known, err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if ls := r.Index().Locations(bid); len(ls) != 2 || !r.Reusable(bid) {
		t.Fatalf("after storing it again: locations %v, reusable %v", ls, r.Reusable(bid))
	}
	if known, err := r.SaveBlobWithID(ctx, index.DataBlob, bid, data); err != nil || !known {
		t.Fatalf("third SaveBlob: known %v, %v; want it deduplicated against the new copy", known, err)
	}
	r.SetCandidatePacks(nil)
	if r.HasCandidatePacks() {
		t.Error("candidates not cleared")
	}
}

// TestOrphanCandidatePacksNotIndexed: a pack no index object lists (a
// prune unindexed it before deleting it) is not indexed again when a
// deletion-candidate record names it: neither by a writer's
// IndexOrphanPacks nor by repair index, which reports it. Other orphans
// are indexed as before.
func TestOrphanCandidatePacksNotIndexed(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	marked, markedPack := savePack(t, r, randBytes(1, 3000))
	orphan, _ := savePack(t, r, randBytes(2, 3000))
	idx, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil || len(idx) != 2 {
		t.Fatalf("index objects: %v %v", idx, err)
	}
	for _, oid := range idx {
		if err := be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: oid.String()}); err != nil {
			t.Fatal(err)
		}
	}
	cand := map[id.ID]struct{}{markedPack: {}}

	if n, err := reopen(t, be).IndexOrphanPacks(ctx, cand); err != nil || n != 1 {
		t.Fatalf("IndexOrphanPacks: %d, %v; want the one orphan not marked", n, err)
	}
	fresh := reopen(t, be)
	if fresh.Index().Has(marked) || !fresh.Index().Has(orphan) {
		t.Fatalf("after IndexOrphanPacks: marked blob indexed %v, other orphan indexed %v", fresh.Index().Has(marked), fresh.Index().Has(orphan))
	}

	rep, err := reopen(t, be).RepairIndex(ctx, cand)
	if err != nil || rep.Indexed != 0 || len(rep.Candidates) != 1 || rep.Candidates[0] != markedPack {
		t.Fatalf("RepairIndex: %+v, %v; want the candidate pack left and reported", rep, err)
	}
	if reopen(t, be).Index().Has(marked) {
		t.Fatal("repair index indexed a pack a deletion-candidate record names")
	}
}
