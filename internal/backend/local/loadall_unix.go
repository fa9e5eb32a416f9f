//go:build unix

package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"

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
	fd, err := retryEINTR(func() (int, error) { return syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0) })
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, &fs.PathError{Op: "open", Path: p, Err: err})
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, &fs.PathError{Op: "stat", Path: p, Err: err})
	}
	if st.Size > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", h, limit)
	}
	// One byte more than the size, so that a file that grew since the
	// stat is read to its end (and refused past the limit) rather than cut.
	buf := make([]byte, st.Size+1)
	n := 0
	for {
		k, err := retryEINTR(func() (int, error) { return syscall.Pread(fd, buf[n:], int64(n)) })
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", h, &fs.PathError{Op: "read", Path: p, Err: err})
		}
		if k == 0 {
			return buf[:n], nil
		}
		n += k
		if int64(n) > limit {
			return nil, fmt.Errorf("%s is larger than %d bytes", h, limit)
		}
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
	}
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}
