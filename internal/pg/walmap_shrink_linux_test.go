package pg

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
)

// TestArchiveStreamedShrunkWhileMapped: a segment that another process
// shrinks by less than a page after archive-wal checked its size, while
// it holds the file open for writing (so no read lease is granted), is
// refused and nothing is stored; the mapping would otherwise read the
// cut tail as zeros and store a segment that never was.
func TestArchiveStreamedShrunkWhileMapped(t *testing.T) {
	ctx := context.Background()
	const segSize = 4 << 20
	seg := makeSegment(1, 42, segSize, 1)
	name := Segment{TLI: 1, No: 42}.Name(segSize)
	repo, _ := newLocalRepo(t)
	p := writeFile(t, t.TempDir(), name, seg)
	w, err := os.OpenFile(p, os.O_RDWR, 0) // a writer: no lease
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mapped := false
	shrink := func(f *os.File, size int64) ([]byte, func(), bool) {
		if err := w.Truncate(size - 100); err != nil {
			t.Fatal(err)
		}
		data, unmap, ok := mapWALFile(f, size)
		mapped = ok
		return data, unmap, ok
	}
	_, err = archiveStreamed(ctx, repo, p, name, shrink)
	if err == nil {
		t.Errorf("a segment shrunk while archived was stored (mapped: %v)", mapped)
	}
	if _, lerr := repo.LoadNamed(ctx, backend.WALFile, name); !errors.Is(lerr, fs.ErrNotExist) {
		t.Errorf("after %v: stored object: %v, want none", err, lerr)
	}
}
