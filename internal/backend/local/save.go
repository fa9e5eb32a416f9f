package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/directio"
)

// Save implements backend.Backend: temp file, copy, size check, fsync,
// read-only, link to the final name (never overwriting), fsync directory.
// On any error the temporary file is removed and nothing is stored.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	if err := b.SaveDeferred(ctx, h, rd, size); err != nil {
		return err
	}
	return b.full(b.SyncNames(ctx, []backend.Handle{h}))
}

// SaveDeferred implements backend.DeferredSaver: Save without the
// directory fsync.
func (b *Backend) SaveDeferred(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	p, err := b.path(h)
	if err != nil {
		return err
	}
	if err := backend.CheckSave(ctx, h, size); err != nil {
		return err
	}
	dir := filepath.Dir(p)
	f, err := createTemp(dir)
	if err != nil {
		return b.full(fmt.Errorf("saving %s: %w", h, err))
	}
	return b.full(publish(h, f.Name(), p, writeTemp(ctx, f, rd, size, h.Type == backend.PackFile)))
}

// publish links the written temporary file tmp to dst unless writing it
// failed with err and removes the temporary name; the caller makes the
// link durable (SyncNames).
func publish(h backend.Handle, tmp, dst string, err error) error {
	if err == nil {
		err = linkNew(tmp, dst)
	}
	// After a successful link the temp name is only a second name for the
	// object; a failure to remove it leaves a harmless file that List
	// ignores and CleanTemp removes later.
	rmErr := os.Remove(tmp)
	if err != nil {
		if rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			err = fmt.Errorf("%w (and removing temporary file: %v)", err, rmErr)
		}
		return fmt.Errorf("saving %s: %w", h, err)
	}
	return nil
}

// SyncNames implements backend.DeferredSaver: each directory of hs is
// synced once.
func (b *Backend) SyncNames(ctx context.Context, hs []backend.Handle) error {
	synced := map[string]bool{}
	for _, h := range hs {
		p, err := b.path(h)
		if err != nil {
			return err
		}
		if dir := filepath.Dir(p); !synced[dir] {
			if err := syncDir(dir); err != nil {
				return fmt.Errorf("saving %s: %w", h, err)
			}
			synced[dir] = true
		}
	}
	return nil
}

// createTemp creates a temporary file in dir, creating dir if it went
// missing (Create makes every directory, but an operator may have pruned
// empty ones).
func createTemp(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, err
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return nil, err
	}
	return os.CreateTemp(dir, tempPrefix+"*")
}

// writeTemp copies exactly size bytes from rd into f, makes f read-only
// and durable, and closes it.
func writeTemp(ctx context.Context, f *os.File, rd io.Reader, size int64, uncache bool) error {
	return finishTemp(f, copyExact(ctx, f, rd, size), uncache)
}

// finishTemp makes f read-only and durable unless writing it failed with
// err, and closes it. With uncache, f's pages leave the page cache once
// durable: a pack is read again by a restore, a verify or a prune, mostly
// not soon, and then past the page cache (direct.go). A backup that kept
// them filled the page cache with fresh pages, which cost the kernel more
// than writing them: a backup of one 10 GiB file took 35-36 s with 27-28
// s of system time, and 17 s with 5.3-5.7 s after this (docs/benchmarks.md).
// A pack streamed by Create is written past the page cache where the file
// system takes that (directio.Writer), which halved the system time again.
func finishTemp(f *os.File, err error, uncache bool) error {
	if err == nil {
		err = f.Chmod(objectMode)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil && uncache {
		// Advice: clean pages go, and a failure changes nothing.
		_ = directio.Uncache(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func copyExact(ctx context.Context, w io.Writer, rd io.Reader, size int64) error {
	// One byte more than announced is read to catch a longer reader.
	n, err := io.Copy(w, io.LimitReader(ctxReader{ctx, rd}, size+1))
	switch {
	case err != nil:
		return err
	case n > size:
		return fmt.Errorf("the data is longer than the announced %d bytes", size)
	case n < size:
		return fmt.Errorf("the data ended after %d of the announced %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	return nil
}

// ctxReader stops a long copy when the context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
