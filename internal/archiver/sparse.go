package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/chunker"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// sparse reports whether a file has fewer blocks allocated than its size
// needs: it may have holes.
func sparse(st *syscall.Stat_t) bool {
	return st.Blocks*512 < st.Size
}

// chunkSparse chunks a file that may have holes without reading them: the
// data regions (SEEK_DATA, SEEK_HOLE) go through the chunker one by one,
// and each hole becomes chunks of zeros of the largest chunk size (and one
// shorter), whose ids are computed and stored once per backup (zeroChunk).
// A 10 GiB file with 10 MiB of data is read and hashed as 10 MiB. The
// restorer writes no all-zero block, so the holes come back as holes.
//
// Chunk boundaries differ from those of the same bytes read as zeros: a
// copy of the file without holes deduplicates against it only in part.
// Both restore to the same bytes.
func (a *Archiver) chunkSparse(ctx context.Context, j *fileJob, c *chunks, f *os.File, size int64) error {
	fd := int(f.Fd())
	for c.off < size {
		data, err := unix.Seek(fd, c.off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = size // no data after off: a hole to the end
		} else if err != nil {
			// A file system without SEEK_DATA: read the rest.
			a.log.Debug("SEEK_DATA failed; reading holes", "path", j.abs, "err", err)
			return a.split(ctx, j, c, chunker.New(io.NewSectionReader(f, c.off, size-c.off), a.opt.Chunker, a.opt.Seed))
		}
		data = min(data, size)
		if err := a.zeros(ctx, c, data-c.off); err != nil {
			return err
		}
		if data == size {
			return nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size // read the rest
		}
		hole = min(hole, size)
		sec := io.NewSectionReader(f, data, hole-data)
		if err := a.split(ctx, j, c, chunker.New(sec, a.opt.Chunker, a.opt.Seed)); err != nil {
			return err
		}
		if c.off != hole {
			// Shorter than SEEK_HOLE said: the file shrank meanwhile.
			return nil
		}
	}
	return nil
}

// zeros appends the chunks of n zero bytes to c.
func (a *Archiver) zeros(ctx context.Context, c *chunks, n int64) error {
	for n > 0 {
		size := int(min(n, int64(a.opt.Chunker.Max)))
		zid, err := a.zeroChunk(ctx, size)
		if err != nil {
			return err
		}
		c.res = append(c.res, &zid)
		c.off += int64(size)
		n -= int64(size)
	}
	return nil
}

// zeroChunk returns the id of a chunk of size zero bytes, stored once per
// backup and then remembered (for a bounded number of sizes).
func (a *Archiver) zeroChunk(ctx context.Context, size int) (id.ID, error) {
	a.zeroMu.Lock()
	defer a.zeroMu.Unlock()
	if zid, ok := a.zeroIDs[size]; ok {
		return zid, nil
	}
	zid, _, err := a.repo.SaveBlob(ctx, index.DataBlob, make([]byte, size))
	if err != nil {
		err = fmt.Errorf("saving data: %w", err)
		a.fatal(err)
		return id.ID{}, err
	}
	if len(a.zeroIDs) < 64 {
		a.zeroIDs[size] = zid
	}
	return zid, nil
}
