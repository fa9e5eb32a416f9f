package local

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nestguard/nestguard/internal/backend"
)

// Load implements backend.Backend. A range that runs past the end of the
// object fails on read with io.ErrUnexpectedEOF after the bytes that do
// exist, so a reader of a truncated pack still gets the blobs before the
// damage.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	p, err := b.path(h)
	if err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("loading %s: invalid range offset %d length %d", h, offset, length)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("loading %s: %w", h, err)
	}
	want := length
	if length == 0 {
		want = fi.Size() - offset // negative: offset past the end
	}
	if dr := b.openDirectRange(f, p, offset, want); dr != nil {
		return &fileReader{Reader: backend.ExactReader(dr, h, offset, want, fi.Size()), c: dr}, nil
	}
	return &fileReader{
		Reader: backend.ExactReader(io.NewSectionReader(f, offset, max(want, 0)), h, offset, want, fi.Size()),
		c:      f,
	}, nil
}

type fileReader struct {
	io.Reader
	c io.Closer
}

func (r *fileReader) Close() error { return r.c.Close() }

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	p, err := b.path(h)
	if err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	return backend.FileInfo{Name: fi.Name(), Size: fi.Size(), ModTime: fi.ModTime()}, nil
}
