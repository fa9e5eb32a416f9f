//go:build unix

package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/backend"
)

// LoadAll implements backend.WholeLoader: open, fstat, read and close on a
// raw descriptor, four system calls for a small object (snapshots, keys,
// audit entries, index objects), where an os.File with io.ReadAll takes
// about twelve (the file's flags, the poller, a read per doubling of the
// buffer). An object larger than limit is refused before it is read.
func (b *Backend) LoadAll(ctx context.Context, h backend.Handle, limit int64) ([]byte, error) {
	p, err := b.path(h)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, err)
	}
	fd, err := retryEINTR(func() (int, error) { return unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, &fs.PathError{Op: "open", Path: p, Err: err})
	}
	defer unix.Close(fd)
	data, err := readWhole(fd, limit, nil, false)
	if err != nil {
		return nil, readError(h, func() string { return p }, limit, err)
	}
	return data, nil
}

// OpenWholeReader implements backend.WholeReaderOpener: the directory of
// type t is opened once, and each object is opened relative to it
// (openat: no walk of the repository's path per object), read into the
// caller's buffer without a stat, and closed: three system calls for an
// object smaller than the buffer on a local file system, where LoadAll
// takes five. A missing directory, or the config, is read through
// LoadAll.
func (b *Backend) OpenWholeReader(ctx context.Context, t backend.FileType) (backend.WholeReader, error) {
	if t == backend.ConfigFile || !knownType(t) {
		return loadAllReader{b: b, t: t}, nil
	}
	dir := filepath.Join(b.dir, string(t))
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if errors.Is(err, unix.ENOENT) {
		return loadAllReader{b: b, t: t}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", t, &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	return &dirReader{t: t, dir: dir, fd: fd, shortIsEOF: shortReadIsEOF(fd)}, nil
}

// loadAllReader reads each object through LoadAll.
type loadAllReader struct {
	b *Backend
	t backend.FileType
}

func (r loadAllReader) ReadAll(ctx context.Context, name string, limit int64, _ []byte) ([]byte, error) {
	return r.b.LoadAll(ctx, backend.Handle{Type: r.t, Name: name}, limit)
}

func (r loadAllReader) Close() error { return nil }

// dirReader reads the objects of one type relative to its directory's
// descriptor.
type dirReader struct {
	t   backend.FileType
	dir string
	fd  int
	// shortIsEOF: the directory is on a file system whose read of a
	// regular file returns fewer bytes than asked only at its end, so a
	// short read needs no second read to see the end.
	shortIsEOF bool
}

func (r *dirReader) ReadAll(ctx context.Context, name string, limit int64, buf []byte) ([]byte, error) {
	h := backend.Handle{Type: r.t, Name: name}
	rel, err := relPath(h)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, err)
	}
	fd, err := retryEINTR(func() (int, error) { return unix.Openat(r.fd, rel, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, &fs.PathError{Op: "open", Path: filepath.Join(r.dir, rel), Err: err})
	}
	defer unix.Close(fd)
	b, err := readWhole(fd, limit, buf, r.shortIsEOF)
	if err != nil {
		return nil, readError(h, func() string { return filepath.Join(r.dir, rel) }, limit, err)
	}
	return b, nil
}

func (r *dirReader) Close() error { return unix.Close(r.fd) }

// readWhole reads the whole file fd into buf's storage, grown as needed;
// an object larger than limit is errTooLarge, a failed system call an
// *fs.PathError without its path (see readError). With no buffer given,
// the file is sized by a stat first (and refused before it is read if too
// large); with one, the stat is made only when the object fills it.
// Reading ends at a read that returns nothing, or, with shortIsEOF, at one
// that returns less than asked.
func readWhole(fd int, limit int64, buf []byte, shortIsEOF bool) ([]byte, error) {
	buf = buf[:cap(buf)]
	sized := false
	// size sizes the buffer by the file: one byte more than its size, so
	// that a file that grew since is read to its end (and refused past
	// the limit) rather than cut.
	size := func(n int) error {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return &fs.PathError{Op: "stat", Err: err}
		}
		sized = true
		if st.Size > limit {
			return errTooLarge
		}
		if want := int(st.Size) + 1; want > len(buf) {
			buf = append(buf[:n], make([]byte, want-n)...)
		}
		return nil
	}
	if len(buf) == 0 {
		if err := size(0); err != nil {
			return nil, err
		}
	}
	n := 0
	for {
		if n == len(buf) {
			full := len(buf)
			if !sized {
				if err := size(n); err != nil {
					return nil, err
				}
			}
			if len(buf) == full {
				buf = append(buf, make([]byte, len(buf))...)
			}
		}
		k, err := retryEINTR(func() (int, error) { return unix.Pread(fd, buf[n:], int64(n)) })
		if err != nil {
			return nil, &fs.PathError{Op: "read", Err: err}
		}
		n += k
		if int64(n) > limit {
			return nil, errTooLarge
		}
		if k == 0 || shortIsEOF && n < len(buf) {
			return buf[:n], nil
		}
	}
}

// errTooLarge is readWhole's error for an object past its limit.
var errTooLarge = errors.New("too large")

// readError is the error of readWhole's err reading h from the file at
// path(), computed only on error.
func readError(h backend.Handle, path func() string, limit int64, err error) error {
	if errors.Is(err, errTooLarge) {
		return fmt.Errorf("%s is larger than %d bytes", h, limit)
	}
	if pe, ok := err.(*fs.PathError); ok {
		pe.Path = path()
	}
	return fmt.Errorf("loading %s: %w", h, err)
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}
