package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/index/diskidx"
)

// DefaultIndexCacheMinBlobs is how many blobs (estimated from the size of
// the index objects) a repository has before LoadIndex keeps its index in
// a local file (Options.IndexCacheDir) instead of in memory: 4 Mi blobs
// take about 240 MB in memory (docs/architecture.md, "The index").
const DefaultIndexCacheMinBlobs = 1 << 22

// indexObjectBytesPerBlob estimates the blobs of an index object from its
// stored size: 45 bytes a blob, 36 a pack of about 20 blobs, 49 an object.
const indexObjectBytesPerBlob = 47

// maxOverlayBlobs bounds the blobs of the index objects written since the
// index cache was built that LoadIndex keeps in memory over it; past that
// it builds the cache again. 2 Mi blobs take about 120 MB.
const maxOverlayBlobs = 1 << 21

// indexCacheFile is the name of the index cache in a repository's
// directory of the cache.
const indexCacheFile = "index-v1"

// IndexCacheInfo describes the index cache the in-memory index stands on.
type IndexCacheInfo struct {
	Path    string
	Blobs   int   // blobs in the cache file
	Bytes   int64 // its size
	Sources int   // index objects it was built from
	Built   bool  // built (or rebuilt) by this LoadIndex
}

// IndexCache describes the index cache LoadIndex used, or returns nil if
// the index is in memory only.
func (r *Repository) IndexCache() *IndexCacheInfo {
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	if r.idxCache == nil {
		return nil
	}
	c := *r.idxCache
	return &c
}

// loadIndexCache is LoadIndex's first step for a large repository: when
// nothing is loaded yet, an index cache directory is set and the index
// objects listed in objs hold at least r.cacheMin blobs, it opens the
// repository's index cache, or builds it from objs when it is missing,
// damaged, or was built from index objects that are gone or from far
// fewer than are listed, and puts the in-memory index over it. The index
// objects it holds count as loaded: LoadIndex reads only the others into
// memory.
//
// The cache is a convenience: when it cannot be built (no space, no
// permission), the index stays in memory, with a warning. It is not
// trusted further than a stored object either: every blob read through
// it is authenticated (ID and associated data), so a wrong location fails
// the read, never returns other data.
func (r *Repository) loadIndexCache(ctx context.Context, objs []listedObject) error {
	if r.cacheDir == "" {
		return nil
	}
	r.idxMu.Lock()
	fresh := len(r.loadedIndex) == 0 && r.idx.Len() == 0 && r.idxCache == nil
	r.idxMu.Unlock()
	if !fresh {
		return nil
	}
	var total int64
	for _, o := range objs {
		total += o.size
	}
	if total/indexObjectBytesPerBlob < int64(r.cacheMin) {
		return nil
	}
	key, err := r.key.IndexCacheKey()
	if err != nil {
		return err
	}
	defer clear(key)
	dir := filepath.Join(r.cacheDir, r.cfg.ID)
	path := filepath.Join(dir, indexCacheFile)
	t, err := diskidx.Open(path, key)
	switch {
	case err == nil:
		srcs := t.Sources()
		gone, newBlobs := compareSources(srcs, objs)
		if gone == 0 && newBlobs <= maxOverlayBlobs {
			r.useIndexCache(t, srcs, IndexCacheInfo{Path: path})
			return nil
		}
		t.Close()
		r.log.Info("rebuilding the index cache: index objects changed", "path", path, "gone", gone, "new_blobs", newBlobs)
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, diskidx.ErrOtherVersion):
		r.log.Info("rebuilding the index cache in this version's format", "path", path, "was", err)
	default:
		r.log.Warn("rebuilding the index cache", "err", err)
	}
	t, srcs, err := r.buildIndexCache(ctx, dir, path, key, objs)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Warn("cannot build the index cache: keeping the index in memory", "path", path, "err", err)
		return nil
	}
	r.useIndexCache(t, srcs, IndexCacheInfo{Path: path, Built: true})
	return nil
}

// compareSources returns how many of the index objects a cache was built
// from (srcs, sorted) are not listed in objs, and the estimated blobs of
// the listed ones it was not built from.
func compareSources(srcs []id.ID, objs []listedObject) (gone int, newBlobs int64) {
	listed := slices.Clone(objs)
	slices.SortFunc(listed, func(a, b listedObject) int { return bytes.Compare(a.id[:], b.id[:]) })
	i := 0
	for _, o := range listed {
		for i < len(srcs) && bytes.Compare(srcs[i][:], o.id[:]) < 0 {
			gone++
			i++
		}
		if i < len(srcs) && srcs[i] == o.id {
			i++
			continue
		}
		newBlobs += o.size / indexObjectBytesPerBlob
	}
	return gone + len(srcs) - i, newBlobs
}

func (r *Repository) useIndexCache(t *diskidx.Table, srcs []id.ID, info IndexCacheInfo) {
	// A bucket of the file that fails its tag after it was opened (damaged
	// or edited since) is warned about once; its blobs look unknown to a
	// lookup (a backup stores them again) until a read repairs them from
	// the index objects (FindBlob: a restore goes on), and the table moves
	// the file aside so that the next run rebuilds it.
	t.OnDamage(func(err error) {
		r.log.Warn("index cache damaged: blobs it holds look absent until a read repairs them from the index objects or the next run rebuilds it; a backup stores them again", "path", t.Path(), "err", err)
	})
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	// The Map is replaced before any blob is added or looked up: LoadIndex
	// runs first (see Open). The table stays open for the process's life.
	r.idx = index.NewMapOver(t)
	r.idxTable = t
	for _, s := range srcs {
		r.loadedIndex[s] = struct{}{}
	}
	info.Blobs, info.Bytes, info.Sources = t.Len(), t.FileBytes(), len(srcs)
	r.idxCache = &info
}

// buildIndexCache reads every index object of objs into a new index cache
// at path and opens it. Unreadable index objects are recorded as LoadIndex
// records them, and left out.
func (r *Repository) buildIndexCache(ctx context.Context, dir, path string, key []byte, objs []listedObject) (*diskidx.Table, []id.ID, error) {
	start := time.Now()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	removeStaleBuilds(dir)
	b, err := diskidx.NewBuilder(dir)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]id.ID, len(objs))
	for i, o := range objs {
		ids[i] = o.id
	}
	var srcs []id.ID
	err = r.readIndexObjects(ctx, ids, func(iid id.ID, f *index.File) error {
		for _, p := range f.Packs {
			for _, e := range p.Blobs {
				e.Pack = p.Pack
				if err := b.Add(e); err != nil {
					return err
				}
			}
		}
		srcs = append(srcs, iid)
		return nil
	})
	if err != nil {
		b.Abort()
		return nil, nil, err
	}
	if err := b.Finish(path, key, srcs); err != nil {
		return nil, nil, err
	}
	t, err := diskidx.Open(path, key)
	if err != nil {
		return nil, nil, err
	}
	r.log.Info("built the index cache", "path", path, "blobs", t.Len(), "index_objects", len(srcs), "bytes", t.FileBytes(), "seconds", time.Since(start).Seconds())
	return t, t.Sources(), nil
}

// removeStaleBuilds removes what builds of the index cache that crashed
// left in dir: part directories and temporary files over a day old (a
// build running now is younger).
func removeStaleBuilds(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, ".build-") && !strings.HasPrefix(n, ".index-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
			os.RemoveAll(filepath.Join(dir, n))
		}
	}
}

// maxCacheRepairs bounds the passes over the index objects that one
// process makes to repair its index cache (repairIndexCache): a file that
// keeps failing is a failing disk, and its blobs are then reported as the
// cache's damage rather than read again and again.
const maxCacheRepairs = 3

// FindBlob returns the location of blob bid, as the index's Find does,
// except that when the index cache fails while the repository is open
// (a bucket damaged or changed since it was checked) it first reads the
// blobs of every failed bucket again from the index objects the cache was
// built from (repairIndexCache), so that a restore or a read finds them
// instead of failing with the cache's damage. Only a blob that no index
// object lists is then not found.
func (r *Repository) FindBlob(ctx context.Context, bid id.ID) (index.Entry, error) {
	e, err := r.idx.Find(bid)
	if err == nil || !errors.Is(err, index.ErrIncomplete) { // the cache failed a read or a tag
		return e, err
	}
	// Looked up again even when this call repaired nothing: another
	// read may have repaired the blob's bucket while this one waited
	// (found by review: concurrent reads failed after the repair).
	if rerr := r.repairIndexCache(ctx, bid); rerr != nil {
		return e, errors.Join(err, rerr)
	}
	return r.idx.Find(bid)
}

// repairIndexCache puts in memory, over the index cache, the blobs of its
// buckets that failed their tag since it was opened, read from the index
// objects it was built from: lookups then find them for the rest of the
// process (the file was moved aside when the first bucket failed, and the
// next process rebuilds it). It reads every bucket first, so that one pass
// over the index objects repairs all of them; it makes at most
// maxCacheRepairs passes. bid is the blob a lookup did not find: nothing
// is read unless its bucket is a failed one not repaired yet.
func (r *Repository) repairIndexCache(ctx context.Context, bid id.ID) error {
	t := r.idxTable
	if t == nil {
		return nil
	}
	c := &r.cacheRepair
	c.Lock()
	defer c.Unlock()
	// Nothing to read when bid's bucket was repaired (by another read
	// while this one waited) or no pass is left: the whole file is read
	// only for a bucket not repaired yet (found by review: every failed
	// lookup read it, one at a time).
	if c.repaired[t.Bucket(bid)] || c.passes >= maxCacheRepairs {
		return nil
	}
	want := make(map[uint64]bool)
	for _, b := range t.DamagedBuckets() {
		if !c.repaired[b] {
			want[b] = true
		}
	}
	if !want[t.Bucket(bid)] { // bid's bucket reads: bid is not in the cache
		return nil
	}
	c.passes++
	start := time.Now()
	var blobs int
	err := r.readIndexObjects(ctx, t.Sources(), func(_ id.ID, f *index.File) error {
		for _, p := range f.Packs {
			for _, e := range p.Blobs {
				if want[t.Bucket(e.ID)] {
					e.Pack = p.Pack
					r.idx.Add(e)
					blobs++
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the index objects to repair the index cache: %w", err)
	}
	if c.repaired == nil {
		c.repaired = make(map[uint64]bool)
	}
	for b := range want {
		c.repaired[b] = true
	}
	r.log.Warn("index cache repaired: the blobs of its failed buckets were read again from the index objects", "path", t.Path(), "buckets", len(want), "blobs", blobs, "seconds", time.Since(start).Seconds())
	return nil
}
