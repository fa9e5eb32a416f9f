package repository

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/index/diskidx"
)

// openCached opens the repository on be with the index cache in dir used
// whatever the repository's size.
func openCached(t *testing.T, be backend.Backend, dir string) *Repository {
	t.Helper()
	return openCachedLogged(t, be, dir, nil)
}

// openCachedLogged is openCached logging into logs (if not nil).
func openCachedLogged(t *testing.T, be backend.Backend, dir string, logs *bytes.Buffer) *Repository {
	t.Helper()
	o := testOptions()
	o.IndexCacheDir, o.IndexCacheMinBlobs = dir, 1
	if logs != nil {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	r, err := Open(context.Background(), be, pass, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// saveBlobs saves n random blobs and returns their IDs and contents.
func saveBlobs(t *testing.T, r *Repository, seed uint64, n int) map[id.ID][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[id.ID][]byte{}
	for i := range n {
		d := randBytes(seed*1000+uint64(i), 100_000+i)
		typ := index.BlobType(i % 2)
		bid, _, err := r.SaveBlob(ctx, typ, d)
		if err != nil {
			t.Fatal(err)
		}
		out[bid] = d
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameIndex checks that got's index answers as want's for blobs.
func sameIndex(t *testing.T, got, want *Repository, blobs map[id.ID][]byte) {
	t.Helper()
	gi, wi := got.Index(), want.Index()
	if gi.Len() != wi.Len() {
		t.Fatalf("Len %d, want %d", gi.Len(), wi.Len())
	}
	for bid, d := range blobs {
		if !slices.Equal(gi.Locations(bid), wi.Locations(bid)) {
			t.Fatalf("blob %s: locations %v, want %v", bid.Short(), gi.Locations(bid), wi.Locations(bid))
		}
		b, err := got.LoadBlob(context.Background(), bid, nil)
		if err != nil || !bytes.Equal(b, d) {
			t.Fatalf("blob %s: %v (equal %v)", bid.Short(), err, bytes.Equal(b, d))
		}
	}
	var none id.ID
	if gi.Has(none) {
		t.Fatal("an unknown blob is known")
	}
	gp, wp := gi.Packs(), wi.Packs()
	cmp := func(a, b id.ID) int { return bytes.Compare(a[:], b[:]) }
	slices.SortFunc(gp, cmp)
	slices.SortFunc(wp, cmp)
	if !slices.Equal(gp, wp) {
		t.Fatalf("packs %d, want %d", len(gp), len(wp))
	}
}

func cacheInfo(t *testing.T, r *Repository) *IndexCacheInfo {
	t.Helper()
	c := r.IndexCache()
	if c == nil {
		t.Fatal("the index cache was not used")
	}
	return c
}

func TestIndexCache(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	blobs := saveBlobs(t, r, 1, 30)
	dir := t.TempDir()

	r1 := openCached(t, be, dir)
	c := cacheInfo(t, r1)
	if !c.Built || c.Blobs != 30 {
		t.Fatalf("first open: %+v, want built with 30 blobs", c)
	}
	if fi, err := os.Stat(c.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	sameIndex(t, r1, reopen(t, be), blobs)

	r2 := openCached(t, be, dir)
	if c := cacheInfo(t, r2); c.Built {
		t.Fatal("second open built the cache again")
	}
	sameIndex(t, r2, reopen(t, be), blobs)
	if reopen(t, be).IndexCache() != nil {
		t.Fatal("the cache was used without a cache directory")
	}

	// An index object written since: in memory over the cache.
	for bid, d := range saveBlobs(t, r2, 2, 10) {
		blobs[bid] = d
	}
	r3 := openCached(t, be, dir)
	if c := cacheInfo(t, r3); c.Built || c.Blobs != 30 {
		t.Fatalf("after a backup: %+v, want the old cache", c)
	}
	sameIndex(t, r3, reopen(t, be), blobs)

	// An index object the cache was built from is gone (a prune replaced
	// it): the cache is rebuilt, or it would locate blobs in deleted packs.
	ids, err := r3.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		t.Fatal(err)
	}
	var dropped id.ID
	for _, iid := range ids {
		f, err := r3.ReadIndexObject(ctx, iid)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Packs) > 1 {
			dropped = f.Packs[0].Pack
			if _, err := r3.ReplaceIndexObject(ctx, iid, func(p id.ID) bool { return p == dropped }); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if dropped.IsNull() {
		t.Fatal("no index object with two packs")
	}
	r4 := openCached(t, be, dir)
	if c := cacheInfo(t, r4); !c.Built {
		t.Fatal("not rebuilt after an index object it was built from went")
	}
	if slices.Contains(r4.Index().Packs(), dropped) {
		t.Fatal("the rebuilt cache still lists the unindexed pack")
	}
	want := reopen(t, be)
	for bid := range blobs {
		if !slices.Equal(r4.Index().Locations(bid), want.Index().Locations(bid)) {
			t.Fatalf("blob %s: locations differ", bid.Short())
		}
	}

	// A damaged cache is detected and rebuilt.
	path := cacheInfo(t, r4).Path
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r5 := openCached(t, be, dir)
	if c := cacheInfo(t, r5); !c.Built {
		t.Fatal("a damaged cache was not rebuilt")
	}
	for bid := range blobs {
		if !slices.Equal(r5.Index().Locations(bid), want.Index().Locations(bid)) {
			t.Fatalf("blob %s: locations differ after the rebuild", bid.Short())
		}
	}
}

// TestIndexCacheLocationsAuthenticated shows that a cache that passes its
// checks but locates blobs wrongly (a bug, or a writer with the key)
// cannot make a read return other data: every read is authenticated.
func TestIndexCacheLocationsAuthenticated(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	blobs := saveBlobs(t, r, 3, 6)
	dir := t.TempDir()
	c := cacheInfo(t, openCached(t, be, dir))
	ids, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		t.Fatal(err)
	}
	// Swap the locations of blobs in pairs, under the right key.
	var es []index.Entry
	r.Index().Each(func(e index.Entry) bool { es = append(es, e); return true })
	bl, err := diskidx.NewBuilder(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		o := es[i^1]
		if i^1 >= len(es) {
			o = es[0]
		}
		e.Pack, e.Offset, e.Length, e.RawLength = o.Pack, o.Offset, o.Length, o.RawLength
		if err := bl.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	key, err := r.Key().IndexCacheKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := bl.Finish(c.Path, key, ids); err != nil {
		t.Fatal(err)
	}
	r2 := openCached(t, be, dir)
	if cacheInfo(t, r2).Built {
		t.Fatal("the forged cache was not used")
	}
	failed := 0
	for bid, d := range blobs {
		got, err := r2.LoadBlob(ctx, bid, nil)
		if err == nil {
			if !bytes.Equal(got, d) {
				t.Fatalf("blob %s: other data returned", bid.Short())
			}
			continue
		}
		if !errors.Is(err, ErrObjectCorrupted) {
			t.Fatalf("blob %s: %v, want ErrObjectCorrupted", bid.Short(), err)
		}
		failed++
	}
	if failed == 0 {
		t.Fatal("no read failed: the forged locations were not used")
	}
}

// TestIndexCacheEditedAfterOpen: the cache file changed in place while a
// repository uses it (bit rot, or someone who can write to the cache
// directory) makes its blobs look absent, never another blob present: a
// backup stores them again, a read fails naming the cache, the damage is
// logged once, and the next open rebuilds the cache.
func TestIndexCacheEditedAfterOpen(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	blobs := saveBlobs(t, r, 4, 20)
	var logs bytes.Buffer
	dir := t.TempDir()
	r1 := openCachedLogged(t, be, dir, &logs)
	path := cacheInfo(t, r1).Path
	// Every blob ID in the file, its last bit flipped: each bucket fails
	// its tag, and no forged ID may look present.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var forged []id.ID
	for bid := range blobs {
		i := bytes.Index(b, bid[:])
		if i < 0 {
			t.Fatalf("blob %s not in the file", bid.Short())
		}
		b[i+id.Size-1] ^= 1
		forged = append(forged, id.ID(b[i:i+id.Size]))
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, bid := range forged {
		if r1.Index().Has(bid) || r1.Reusable(bid) {
			t.Fatalf("blob %s, stored nowhere, looks present", bid.Short())
		}
	}
	for bid := range blobs {
		if r1.Reusable(bid) {
			t.Fatalf("blob %s: reusable through a damaged bucket", bid.Short())
		}
	}
	// A read repairs every damaged bucket from the index objects, once.
	for bid, d := range blobs {
		got, err := r1.LoadBlob(ctx, bid, nil)
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("blob %s: LoadBlob through the damaged cache: %v", bid.Short(), err)
		}
	}
	for _, bid := range forged {
		if r1.Index().Has(bid) || r1.Reusable(bid) {
			t.Fatalf("blob %s, stored nowhere, looks present after the repair", bid.Short())
		}
	}
	if n := strings.Count(logs.String(), "index cache damaged"); n != 1 {
		t.Fatalf("the damage was logged %d times, want once:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "index cache repaired"); n != 1 {
		t.Fatalf("the repair was logged %d times, want once:\n%s", n, logs.String())
	}
	// A backup stores nothing again.
	for bid, d := range blobs {
		got, _, err := r1.SaveBlob(ctx, index.DataBlob, d)
		if err != nil || got != bid {
			t.Fatalf("blob %s: SaveBlob: %v", bid.Short(), err)
		}
	}
	if err := r1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for bid, d := range blobs {
		if got, err := r1.LoadBlob(ctx, bid, nil); err != nil || !bytes.Equal(got, d) {
			t.Fatalf("blob %s: not stored again: %v", bid.Short(), err)
		}
	}
	r2 := openCached(t, be, dir)
	if c := cacheInfo(t, r2); !c.Built {
		t.Fatal("the damaged cache was not rebuilt")
	}
	for bid, d := range blobs {
		got, err := r2.LoadBlob(ctx, bid, nil)
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("blob %s after the rebuild: %v", bid.Short(), err)
		}
	}
}

// TestIndexCacheRepairedWhileOpen: buckets of the cache file damaged one
// after another while a repository uses it: each read that meets a new
// one repairs it from the index objects (a restore goes on), up to
// maxCacheRepairs passes; after them a read through a newly damaged bucket
// fails naming the cache, as a failing disk's should.
func TestIndexCacheRepairedWhileOpen(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	blobs := saveBlobs(t, r, 8, 50)
	var logs bytes.Buffer
	r1 := openCachedLogged(t, be, t.TempDir(), &logs)
	path := cacheInfo(t, r1).Path
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// One blob per bucket, in turn.
	seen := map[uint64]bool{}
	var order []id.ID
	for bid := range blobs {
		if b := r1.idxTable.Bucket(bid); !seen[b] {
			seen[b] = true
			order = append(order, bid)
		}
	}
	if len(order) < maxCacheRepairs+1 {
		t.Fatalf("%d buckets, want more than %d", len(order), maxCacheRepairs)
	}
	for i, bid := range order[:maxCacheRepairs+1] {
		at := bytes.Index(content, bid[:])
		if at < 0 {
			t.Fatalf("blob %s not in the file", bid.Short())
		}
		if _, err := f.WriteAt([]byte{content[at+id.Size-1] ^ 1}, int64(at+id.Size-1)); err != nil {
			t.Fatal(err)
		}
		got, err := r1.LoadBlob(ctx, bid, nil)
		if i < maxCacheRepairs {
			if err != nil || !bytes.Equal(got, blobs[bid]) {
				t.Fatalf("read %d, through a bucket damaged since: %v", i+1, err)
			}
			if n := strings.Count(logs.String(), "index cache repaired"); n != i+1 {
				t.Fatalf("after read %d, %d repairs logged:\n%s", i+1, n, logs.String())
			}
			continue
		}
		if !errors.Is(err, ErrBlobNotFound) || !errors.Is(err, diskidx.ErrDamaged) || !strings.Contains(err.Error(), path) {
			t.Fatalf("read past the repairs: %v, want an error naming the damaged cache", err)
		}
	}
	// The repaired blobs stay found.
	for _, bid := range order[:maxCacheRepairs] {
		if got, err := r1.LoadBlob(ctx, bid, nil); err != nil || !bytes.Equal(got, blobs[bid]) {
			t.Fatalf("blob %s after the repairs: %v", bid.Short(), err)
		}
	}
}

// TestIndexCacheRepairConcurrentReads (review45): reads through damaged
// buckets at once, as restore workers and tree loads make them: each must
// find its blob. A read whose lookup failed while another read was
// repairing waits for that repair, finds nothing left to repair
// (repairIndexCache returns false) and returned its first lookup's error
// without looking again: a blob the repair had just put back reported
// missing.
func TestIndexCacheRepairConcurrentReads(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	blobs := saveBlobs(t, r, 9, 200)
	r1 := openCached(t, be, t.TempDir())
	path := cacheInfo(t, r1).Path
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for bid := range blobs {
		at := bytes.Index(content, bid[:])
		if at < 0 {
			t.Fatalf("blob %s not in the file", bid.Short())
		}
		if _, err := f.WriteAt([]byte{content[at+id.Size-1] ^ 1}, int64(at+id.Size-1)); err != nil {
			t.Fatal(err)
		}
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for bid, d := range blobs {
		wg.Go(func() {
			<-start
			got, err := r1.LoadBlob(ctx, bid, nil)
			if err != nil || !bytes.Equal(got, d) {
				if failed.Add(1) == 1 {
					t.Errorf("blob %s, read while another read repaired the cache: %v", bid.Short(), err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d concurrent reads failed", n, len(blobs))
	}
}

// TestIndexCacheTruncatedWhileOpen: the cache file cut short (to nothing,
// or half) while a repository uses it: every bucket that no longer reads
// is repaired from the index objects, as one that fails its tag is (found
// by a hostile test: a restore ended with nothing restored).
func TestIndexCacheTruncatedWhileOpen(t *testing.T) {
	for _, keep := range []float64{0, 0.5} {
		ctx := context.Background()
		r, be := newRepo(t)
		blobs := saveBlobs(t, r, 9, 60)
		r1 := openCached(t, be, t.TempDir())
		path := cacheInfo(t, r1).Path
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, int64(float64(fi.Size())*keep)); err != nil {
			t.Fatal(err)
		}
		for bid, d := range blobs {
			if got, err := r1.LoadBlob(ctx, bid, nil); err != nil || !bytes.Equal(got, d) {
				t.Fatalf("kept %.0f%%: blob %s: %v", keep*100, bid.Short(), err)
			}
		}
	}
}
