package pg

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/blake3"
	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
)

// WALRepo is what archiving and restoring WAL need of a repository.
type WALRepo interface {
	SaveNamed(ctx context.Context, t backend.FileType, name string, plain []byte) error
	LoadNamed(ctx context.Context, t backend.FileType, name string) ([]byte, error)
}

// ArchiveResult describes one archived file.
type ArchiveResult struct {
	Name string
	Size int64
	// AlreadyArchived: an identical copy was stored before (PostgreSQL
	// retries a file whose archiving it could not confirm).
	AlreadyArchived bool
	Duration        time.Duration
	// ident is the file's identity when it was read, set for the
	// background worker: the asynchronous mode's acknowledgement names
	// it. Where a file has no identity (identOf), digest is its content
	// digest (contentDigest) instead.
	ident  fileIdent
	digest [32]byte
}

// ErrArchivedDiffers is returned when the repository holds a different
// file under the same name: never overwritten, always loud.
var ErrArchivedDiffers = errors.New("a different file of the same name is already archived")

// maxSmallWALFile bounds history and backup history files, which are text
// of a few hundred bytes.
const maxSmallWALFile = 16 << 20

// ArchiveWAL stores the WAL file at path in repo under name, as
// archive_command: it returns nil only once the file is durably stored.
// Segments (and .partial segments) must be whole: exactly the segment size
// their first page header declares, starting at the position their name
// says. If name is already stored, the stored copy is compared: identical
// is success, different is ErrArchivedDiffers.
func ArchiveWAL(ctx context.Context, repo WALRepo, path, name string) (ArchiveResult, error) {
	return archiveWAL(ctx, repo, path, name, archiveOpts{})
}

// archiveOpts are what the background worker asks of archiveWAL beyond
// ArchiveWAL.
type archiveOpts struct {
	identify bool          // set ArchiveResult.ident (or, without one, digest)
	bufs     *hugemem.Pool // reuse the memory segments are read into
	deferred bool          // leave the name's durability to syncWAL, where repo can
}

// walBatcher is a WALRepo that can make many names durable with one sync
// (repository.Repository).
type walBatcher interface {
	SaveNamedDeferred(ctx context.Context, t backend.FileType, name string, plain []byte) error
	SyncNamed(ctx context.Context, t backend.FileType, names []string) error
}

// syncWAL makes the names of WAL files stored by archiveWAL with deferred
// durable.
func syncWAL(ctx context.Context, repo WALRepo, names []string) error {
	if b, ok := repo.(walBatcher); ok {
		return b.SyncNamed(ctx, backend.WALFile, names)
	}
	return nil
}

func archiveWAL(ctx context.Context, repo WALRepo, path, name string, o archiveOpts) (ArchiveResult, error) {
	began := time.Now()
	res := ArchiveResult{Name: name}
	if !pgmeta.IsWALFileName(name) {
		return res, fmt.Errorf("%q is not a WAL file name PostgreSQL archives (segment, .partial, .history or .backup): pass the file as %%p, or its name with --name", name)
	}
	if sr, ok := repo.(walStreamer); ok && o == (archiveOpts{}) && isSegmentFile(name) {
		var err error
		res.Size, err = archiveStreamed(ctx, sr, path, name, mapWALFile)
		if errors.Is(err, fs.ErrExist) {
			res.AlreadyArchived = true
			err = compareArchivedFile(ctx, repo, path, name)
		}
		res.Duration = time.Since(began)
		return res, err
	}
	data, release, fi, err := readWALFile(path, name, o.bufs)
	if err != nil {
		return res, err
	}
	defer release()
	res.Size = int64(len(data))
	if o.identify {
		var ok bool
		if res.ident, ok = identOf(fi); !ok {
			res.digest = contentDigest(data)
		}
	}
	if b, ok := repo.(walBatcher); ok && o.deferred {
		err = b.SaveNamedDeferred(ctx, backend.WALFile, name, data)
	} else {
		err = repo.SaveNamed(ctx, backend.WALFile, name, data)
	}
	if errors.Is(err, fs.ErrExist) {
		res.AlreadyArchived = true
		err = compareArchived(ctx, repo, name, data)
	}
	res.Duration = time.Since(began)
	if err != nil {
		return res, err
	}
	return res, nil
}

// contentDigest names a WAL file's content in the asynchronous mode's
// acknowledgements where the file has no identity to name (identOf):
// BLAKE3-256, paid twice per file (by the worker and by the call). Where
// it has one, nobody hashes: in the worker the hash of a 16 MiB
// segment cost as much CPU as compressing it (10-26 ms here).
func contentDigest(data []byte) [32]byte { return blake3.Sum256(data) }

// readWALFile reads and checks the file to archive; release gives back
// the memory of data (see loadWALFile), which must
// not be used after it.
func readWALFile(path, name string, bufs *hugemem.Pool) (data []byte, release func(), fi os.FileInfo, err error) {
	data, release, fi, err = loadWALFile(path, name, bufs)
	if err != nil {
		return nil, nil, nil, err
	}
	if isSegmentFile(name) {
		if err := checkSegment(data, name); err != nil {
			release()
			return nil, nil, nil, fmt.Errorf("refusing to archive %s: %w", path, err)
		}
	}
	return data, release, fi, nil
}

// loadWALFile returns the contents of the file to archive and the
// function that gives its memory back (to bufs, when not nil).
func loadWALFile(path, name string, bufs *hugemem.Pool) ([]byte, func(), os.FileInfo, error) {
	f, fi, err := openWALFile(path, name)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	size := fi.Size()
	// A segment is read into huge pages (hugemem), reused by the
	// background worker: into fresh 4 KiB pages, a fault each cost a
	// third of a call's CPU time; mapping the file (MAP_POPULATE) cost 5
	// ms of the call and slowed every pass over it (the BLAKE3 digest
	// took 80% longer on the mapping than on memory of its own).
	var buf *hugemem.Buffer
	release := func() { buf.Free() }
	switch {
	case !isSegmentFile(name):
		buf = hugemem.Heap(int(size))
	case bufs != nil:
		buf = bufs.Get(int(size))
		release = func() { bufs.Put(buf) }
	default:
		buf = hugemem.Alloc(int(size))
	}
	data := buf.Bytes()[:size]
	if _, err := io.ReadFull(f, data); err != nil {
		release()
		return nil, nil, nil, fmt.Errorf("reading WAL file %s: %w (did it shrink while read?)", path, err)
	}
	return data, release, fi, nil
}

// openWALFile opens the WAL file at path to archive under name, and
// refuses what is not a regular file or is larger than a file of its
// kind can be.
func openWALFile(path, name string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading WAL file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("reading WAL file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("WAL file %s is not a regular file", path)
	}
	limit := int64(maxSmallWALFile)
	if isSegmentFile(name) {
		limit = pgmeta.MaxSegmentSize
	}
	if fi.Size() > limit {
		f.Close()
		return nil, nil, fmt.Errorf("WAL file %s has %d bytes, more than a %s file can have", path, fi.Size(), walKind(name))
	}
	return f, fi, nil
}

// isSegmentFile reports whether name is a segment or a .partial one: a
// file of the cluster's segment size, as opposed to the small history
// files.
func isSegmentFile(name string) bool { return pgmeta.IsSegment(name) || pgmeta.IsPartial(name) }

// walStreamer is a WALRepo that stores a file while reading it, or from
// its mapping (repository.Repository).
type walStreamer interface {
	SaveNamedStream(ctx context.Context, t backend.FileType, name string, r io.Reader, size int) error
	SaveNamedPieces(ctx context.Context, t backend.FileType, name string, plain []byte, check func() error) error
}

// archiveStreamed is archiveWAL for a segment archived on its own (one
// archive_command call), in pieces compressed on all cores. The segment
// is mapped (mapWALFile): the pieces are compressed where they lie in the
// page cache, which costs the call less than copying 16 MiB into fresh
// memory first (docs/benchmarks.md, "The archive call maps its
// segment"). Where it cannot be mapped, it is compressed while it is read
// (compress.CompressStream): the next piece is read while the cores
// compress the ones before.
//
// mapFile is mapWALFile, or in a test one that fails, to read instead.
func archiveStreamed(ctx context.Context, repo walStreamer, path, name string, mapFile func(*os.File, int64) ([]byte, func(), bool)) (size int64, err error) {
	f, fi, err := openWALFile(path, name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size = fi.Size()
	head := make([]byte, min(size, longPageHeaderBytes))
	if _, err := io.ReadFull(f, head); err != nil {
		return 0, fmt.Errorf("reading WAL file %s: %w (did it shrink while read?)", path, err)
	}
	if err := checkSegmentHeader(head, size, name); err != nil {
		return 0, fmt.Errorf("refusing to archive %s: %w", path, err)
	}
	if data, unmap, ok := mapFile(f, size); ok {
		release := sync.OnceFunc(unmap)
		defer release()
		if !bytes.Equal(data[:len(head)], head) {
			return size, fmt.Errorf("reading WAL file %s: its first page changed while it was read: is something else writing it?", path)
		}
		// Where no lease holds the file, another process may have cut it
		// meanwhile: the mapping then read zeros (or died of SIGBUS) past
		// its new end, where read(2) would have come up short. Checked
		// once the segment is compressed; then the mapping and its lease
		// go, before the object is stored (an upload may take a while, and
		// an opener for writing waits on the lease).
		shrunk := func() error {
			defer release()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("reading WAL file %s: %w", path, err)
			}
			if fi.Size() < size {
				return fmt.Errorf("reading WAL file %s: it shrank from %d to %d bytes while read: is something else writing it?", path, size, fi.Size())
			}
			return nil
		}
		return size, repo.SaveNamedPieces(ctx, backend.WALFile, name, data, shrunk)
	}
	err = repo.SaveNamedStream(ctx, backend.WALFile, name, io.MultiReader(bytes.NewReader(head), f), int(size))
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return size, fmt.Errorf("reading WAL file %s: %w (did it shrink while read?)", path, err)
	}
	return size, err
}

func walKind(name string) string {
	switch {
	case pgmeta.IsSegment(name):
		return "WAL segment"
	case pgmeta.IsPartial(name):
		return "partial WAL segment"
	case pgmeta.IsHistory(name):
		return "timeline history"
	default:
		return "backup history"
	}
}

// segmentHeader is the long page header at the start of every WAL
// segment (XLogLongPageHeaderData): the standard page header (magic,
// info, timeline, page address, remaining length; 24 bytes with padding),
// then the system identifier, segment size and WAL block size.
type segmentHeader struct {
	Magic     uint16
	Info      uint16
	TLI       uint32
	PageAddr  LSN
	SystemID  uint64
	SegSize   uint32
	BlockSize uint32
}

const (
	xlpLongHeader       = 0x0002 // XLP_LONG_HEADER
	longPageHeaderBytes = 40
)

func parseSegmentHeader(b []byte) (segmentHeader, error) {
	if len(b) < longPageHeaderBytes {
		return segmentHeader{}, fmt.Errorf("%d bytes are too few for a WAL segment", len(b))
	}
	le := binary.LittleEndian
	h := segmentHeader{
		Magic:     le.Uint16(b[0:]),
		Info:      le.Uint16(b[2:]),
		TLI:       le.Uint32(b[4:]),
		PageAddr:  LSN(le.Uint64(b[8:])),
		SystemID:  le.Uint64(b[24:]),
		SegSize:   le.Uint32(b[32:]),
		BlockSize: le.Uint32(b[36:]),
	}
	if h.Info&xlpLongHeader == 0 {
		return h, errors.New("its first page lacks the long header every WAL segment starts with: not a WAL segment (or a recycled one)")
	}
	if !pgmeta.ValidSegmentSize(int64(h.SegSize)) {
		return h, fmt.Errorf("its header declares a segment size of %d bytes, which PostgreSQL does not use", h.SegSize)
	}
	return h, nil
}

// checkSegment makes sure data is the whole segment its name says: the
// size its header declares, starting at the position of its name.
func checkSegment(data []byte, name string) error {
	return checkSegmentHeader(data, int64(len(data)), name)
}

// checkSegmentHeader is checkSegment for a segment of size bytes that
// starts with head (at least its long page header).
func checkSegmentHeader(head []byte, size int64, name string) error {
	h, err := parseSegmentHeader(head)
	if err != nil {
		return err
	}
	if size != int64(h.SegSize) {
		return fmt.Errorf("it has %d bytes, but WAL segments of this cluster have %d: a segment is archived only once complete", size, h.SegSize)
	}
	seg, err := pgmeta.ParseSegment(name[:24], int64(h.SegSize))
	if err != nil {
		return err
	}
	if want := seg.StartLSN(int64(h.SegSize)); h.PageAddr != want {
		return fmt.Errorf("its first page is at %s, but segment %s starts at %s: the file does not belong under this name", h.PageAddr, name[:24], want)
	}
	return nil
}

// compareArchivedFile checks the stored copy of name against the file at
// path.
func compareArchivedFile(ctx context.Context, repo WALRepo, path, name string) error {
	data, release, _, err := readWALFile(path, name, nil)
	if err != nil {
		return err
	}
	defer release()
	return compareArchived(ctx, repo, name, data)
}

// compareArchived checks the stored copy of name against data.
func compareArchived(ctx context.Context, repo WALRepo, name string, data []byte) error {
	stored, err := repo.LoadNamed(ctx, backend.WALFile, name)
	if errors.Is(err, repository.ErrObjectCorrupted) {
		return fmt.Errorf("%s is already archived, but the stored copy is damaged (%w): it cannot be replaced (objects are write-once); keep this file and run 'nestguard verify'", name, err)
	}
	if err != nil {
		return fmt.Errorf("%s is already archived; reading the stored copy to compare: %w", name, err)
	}
	if !bytes.Equal(stored, data) {
		return fmt.Errorf("%s: %w (stored %d bytes, this one %d bytes, contents differ): refusing to overwrite. Two clusters may be archiving into one repository, or this cluster was restored without a new timeline; give each cluster its own repository",
			name, ErrArchivedDiffers, len(stored), len(data))
	}
	return nil
}
