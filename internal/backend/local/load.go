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
	return &fileReader{
		exactReader: exactReader{r: io.NewSectionReader(f, offset, max(want, 0)), h: h, left: want, offset: offset, size: fi.Size()},
		f:           f,
	}, nil
}

type fileReader struct {
	exactReader
	f *os.File
}

func (r *fileReader) Close() error { return r.f.Close() }

// exactReader delivers exactly left bytes or fails with io.ErrUnexpectedEOF;
// a negative left means the range starts past the end of the object.
type exactReader struct {
	r      io.Reader
	h      backend.Handle
	left   int64
	offset int64
	size   int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		return 0, io.EOF
	}
	if e.left < 0 {
		return 0, e.short()
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	switch {
	case err == io.EOF && e.left > 0:
		return n, e.short()
	case err == nil && e.left == 0:
		err = io.EOF
	}
	return n, err
}

func (e *exactReader) short() error {
	return fmt.Errorf("loading %s: the object is %d bytes, the range at offset %d runs past its end: %w", e.h, e.size, e.offset, io.ErrUnexpectedEOF)
}

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
