package repository

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/index"
)

// TestIndexFlushByBlobs: packs of tiny blobs are indexed once
// indexFlushBlobs of their blobs wait, before indexFlushPacks packs do,
// and OnIndexGrowth sees the index grow pack by pack.
func TestIndexFlushByBlobs(t *testing.T) {
	ctx := context.Background()
	r, _ := newRepo(t)
	var mu sync.Mutex
	var sizes []int
	r.OnIndexGrowth(func(n int) { mu.Lock(); sizes = append(sizes, n); mu.Unlock() })
	before := r.Index().MemoryBytes()
	var blob [8]byte
	saved := 0
	// 1 MiB packs hold about 21,000 of these blobs: 5 packs.
	for saved < indexFlushBlobs+40000 {
		binary.LittleEndian.PutUint64(blob[:], uint64(saved))
		if _, _, err := r.SaveBlob(ctx, index.DataBlob, blob[:]); err != nil {
			t.Fatal(err)
		}
		saved++
	}
	r.WaitUploads()
	ids, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		t.Fatal(err)
	}
	if packs := r.Stats.Packs.Load(); packs >= indexFlushPacks || len(ids) == 0 {
		t.Fatalf("%d blobs in %d packs: %d index objects before Flush, want some before %d packs", saved, packs, len(ids), indexFlushPacks)
	}
	if len(sizes) != int(r.Stats.Packs.Load()) {
		t.Fatalf("OnIndexGrowth called %d times for %d packs", len(sizes), r.Stats.Packs.Load())
	}
	// Uploads run concurrently: the calls may come in any order.
	if slices.Min(sizes) <= before || slices.Max(sizes) != r.Index().MemoryBytes() {
		t.Fatalf("index sizes reported %v: want above %d (opened), at most %d (now)", sizes, before, r.Index().MemoryBytes())
	}
	r.OnIndexGrowth(nil)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
