package backend

import (
	"fmt"
	"io"
)

// ExactReader returns a reader that delivers exactly want bytes from r, the
// range at offset of object h of size bytes, and fails with an error
// wrapping io.ErrUnexpectedEOF where the object ends first. A negative want
// means the range starts past the end. Backends use it so that a short
// object is an error, never a silently short read.
func ExactReader(r io.Reader, h Handle, offset, want, size int64) io.Reader {
	return &exactReader{r: r, h: h, left: want, offset: offset, size: size}
}

type exactReader struct {
	r      io.Reader
	h      Handle
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
