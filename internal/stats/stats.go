// Package stats measures a repository: how much data its snapshots
// represent, how much distinct data that is, and how much is stored.
package stats

import (
	"context"
	"sync"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// Stats describe a repository.
type Stats struct {
	Snapshots int `json:"snapshots"`
	// Unreadable are the snapshot objects that could not be read: the
	// logical size and file count lack them.
	Unreadable []error `json:"-"`
	// LogicalSize is what restoring every snapshot would write.
	LogicalSize int64 `json:"logical_size"`
	Files       int64 `json:"files"`
	// UniqueSize is the plaintext size of the distinct blobs.
	UniqueSize int64 `json:"unique_size"`
	Blobs      int   `json:"blobs"`
	// StoredSize is the bytes in storage (packs, index, snapshots, keys).
	StoredSize int64 `json:"stored_size"`
	Packs      int   `json:"packs"`
	// DedupRatio is LogicalSize/UniqueSize; CompressionRatio is
	// UniqueSize/(bytes of packs); TotalRatio is LogicalSize/StoredSize.
	DedupRatio       float64 `json:"dedup_ratio"`
	CompressionRatio float64 `json:"compression_ratio"`
	TotalRatio       float64 `json:"total_ratio"`
	// IndexMemory is the in-memory index cost, and per blob.
	IndexMemory       int     `json:"index_memory_bytes"`
	IndexBytesPerBlob float64 `json:"index_bytes_per_blob"`
}

// Compute measures repo, whose index must be loaded.
func Compute(ctx context.Context, repo *repository.Repository) (*Stats, error) {
	st := &Stats{}
	snaps, unreadable, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, err
	}
	st.Snapshots = len(snaps)
	st.Unreadable = unreadable
	sizes, err := treeSizes(ctx, repo, snaps)
	if err != nil {
		return nil, err
	}
	for _, sn := range snaps {
		b, f := sizes.total(sn.Tree)
		st.LogicalSize += b
		st.Files += f
	}
	idx := repo.Index()
	idx.Each(func(e index.Entry) bool {
		st.UniqueSize += int64(e.RawLength)
		st.Blobs++
		return true
	})
	var packBytes int64
	for _, t := range backend.ObjectTypes() {
		err := repo.Backend().List(ctx, t, func(fi backend.FileInfo) error {
			st.StoredSize += fi.Size
			if t == backend.PackFile {
				packBytes += fi.Size
				st.Packs++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	st.DedupRatio = ratio(st.LogicalSize, st.UniqueSize)
	st.CompressionRatio = ratio(st.UniqueSize, packBytes)
	st.TotalRatio = ratio(st.LogicalSize, st.StoredSize)
	st.IndexMemory = idx.MemoryBytes()
	if st.Blobs > 0 {
		st.IndexBytesPerBlob = float64(st.IndexMemory) / float64(st.Blobs)
	}
	return st, nil
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// sizes holds, per distinct tree, the bytes and files directly in it and
// its subtrees, and the totals computed from them.
type sizes struct {
	mu    sync.Mutex
	trees map[id.ID]*treeSize
}

type treeSize struct {
	bytes, files int64
	subtrees     []id.ID
	total        *[2]int64
}

// treeSizes reads every distinct tree of snaps once (tree.Visitor).
func treeSizes(ctx context.Context, s tree.BlobStore, snaps []*snapshot.Snapshot) (*sizes, error) {
	sz := &sizes{trees: make(map[id.ID]*treeSize)}
	roots := make([]id.ID, len(snaps))
	for i, sn := range snaps {
		roots[i] = sn.Tree
	}
	v := tree.Visitor[struct{}]{Visit: func(_ context.Context, t *tree.Tree, _ struct{}) (func(*tree.Node) struct{}, error) {
		ts := &treeSize{}
		for _, n := range t.Nodes {
			switch n.Type {
			case tree.File:
				ts.bytes += int64(n.Size)
				ts.files++
			case tree.Dir:
				ts.subtrees = append(ts.subtrees, *n.Subtree)
			}
		}
		sz.mu.Lock()
		sz.trees[t.ID] = ts
		sz.mu.Unlock()
		return nil, nil
	}}
	if err := v.Run(ctx, s, tree.Roots(roots...)); err != nil {
		return nil, err
	}
	return sz, nil
}

// total returns the bytes and files below tree tid, counting a subtree
// once per place it appears.
func (sz *sizes) total(tid id.ID) (int64, int64) {
	ts := sz.trees[tid]
	if ts == nil {
		return 0, 0
	}
	if ts.total == nil {
		t := [2]int64{ts.bytes, ts.files}
		for _, sub := range ts.subtrees {
			b, f := sz.total(sub)
			t[0] += b
			t[1] += f
		}
		ts.total = &t
	}
	return ts.total[0], ts.total[1]
}
