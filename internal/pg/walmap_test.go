package pg

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/repository"
)

// TestArchiveStreamedMappedOrRead: a segment archived on its own is
// stored the same whether it was mapped or, where it cannot be, read; and
// the stored object loads back to the segment either way.
func TestArchiveStreamedMappedOrRead(t *testing.T) {
	ctx := context.Background()
	const segSize = 8 << 20 // four pieces
	seg := makeSegment(1, 41, segSize, 1)
	name := Segment{TLI: 1, No: 41}.Name(segSize)
	noMap := func(*os.File, int64) ([]byte, func(), bool) { return nil, nil, false }
	mapped := false
	spy := func(f *os.File, size int64) ([]byte, func(), bool) {
		data, unmap, ok := mapWALFile(f, size)
		mapped = ok
		return data, unmap, ok
	}
	var sizes []int64
	for _, mapFile := range []func(*os.File, int64) ([]byte, func(), bool){spy, noMap} {
		repo, _ := newLocalRepo(t)
		p := writeFile(t, t.TempDir(), name, seg)
		if size, err := archiveStreamed(ctx, repo, p, name, mapFile); err != nil || size != segSize {
			t.Fatalf("archiveStreamed: %d, %v", size, err)
		}
		got, err := repo.LoadNamed(ctx, backend.WALFile, name)
		if err != nil || !bytes.Equal(got, seg) {
			t.Fatalf("the stored segment does not load back: %v", err)
		}
		// Sealed under other nonces, the objects differ; the same frames
		// make the same size (compress's tests compare the frames).
		fi, err := repo.Backend().Stat(ctx, backend.Handle{Type: backend.WALFile, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fi.Size)
	}
	if !mapped && runtime.GOOS == "linux" {
		t.Error("the segment was not mapped")
	}
	if sizes[0] != sizes[1] {
		t.Errorf("stored %d bytes mapped, %d read", sizes[0], sizes[1])
	}
}

// piecesSpy is a walStreamer that records, at the moment it would store
// a segment, whether its mapping was already released.
type piecesSpy struct {
	*repository.Repository
	unmapped *bool
	atStore  bool
}

func (s *piecesSpy) SaveNamedPieces(ctx context.Context, t backend.FileType, name string, plain []byte, check func() error) error {
	kept := bytes.Clone(plain) // plain is not read after check
	if err := check(); err != nil {
		return err
	}
	s.atStore = *s.unmapped
	return s.Repository.SaveNamedPieces(ctx, t, name, kept, nil)
}

// TestArchiveStreamedReleasesBeforeStoring: the mapping, and the lease
// that makes another process's truncate wait, go once the segment is
// compressed and checked, not after the object is stored (an upload to
// S3 may take a while).
func TestArchiveStreamedReleasesBeforeStoring(t *testing.T) {
	ctx := context.Background()
	const segSize = 4 << 20
	seg := makeSegment(1, 43, segSize, 1)
	name := Segment{TLI: 1, No: 43}.Name(segSize)
	repo, _ := newLocalRepo(t)
	p := writeFile(t, t.TempDir(), name, seg)
	unmapped := false
	mapFile := func(f *os.File, size int64) ([]byte, func(), bool) {
		data, unmap, ok := mapWALFile(f, size)
		return data, func() { unmap(); unmapped = true }, ok
	}
	spy := &piecesSpy{Repository: repo, unmapped: &unmapped}
	if _, err := archiveStreamed(ctx, spy, p, name, mapFile); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" && !spy.atStore {
		t.Error("the segment was still mapped when its object was stored")
	}
	if got, err := repo.LoadNamed(ctx, backend.WALFile, name); err != nil || !bytes.Equal(got, seg) {
		t.Errorf("stored segment: %v", err)
	}
}
