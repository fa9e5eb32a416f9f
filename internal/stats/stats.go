// Package stats measures a repository: how much data its snapshots
// represent, how much distinct data that is, and how much is stored.
package stats

import (
	"context"

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
	sizes := map[id.ID][2]int64{} // tree -> bytes, files
	for _, sn := range snaps {
		b, f, err := treeSize(ctx, repo, sn.Tree, sizes)
		if err != nil {
			return nil, err
		}
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
	for _, t := range []backend.FileType{backend.PackFile, backend.IndexFile, backend.SnapshotFile, backend.KeyFile, backend.WALFile, backend.HoldFile} {
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

func treeSize(ctx context.Context, s tree.BlobStore, tid id.ID, memo map[id.ID][2]int64) (int64, int64, error) {
	if v, ok := memo[tid]; ok {
		return v[0], v[1], nil
	}
	t, err := tree.Load(ctx, s, tid)
	if err != nil {
		return 0, 0, err
	}
	var bytes, files int64
	for _, n := range t.Nodes {
		switch n.Type {
		case tree.File:
			bytes += int64(n.Size)
			files++
		case tree.Dir:
			b, f, err := treeSize(ctx, s, *n.Subtree, memo)
			if err != nil {
				return 0, 0, err
			}
			bytes += b
			files += f
		}
	}
	memo[tid] = [2]int64{bytes, files}
	return bytes, files, nil
}
