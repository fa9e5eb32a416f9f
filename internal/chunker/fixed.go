package chunker

import (
	"fmt"
	"io"
)

// fixed cuts rd into size-byte chunks, reading straight into the caller's
// buffer: PostgreSQL relation files change in place by 8 KiB pages, so
// page-aligned fixed chunks deduplicate unchanged ranges without hashing.
type fixed struct {
	rd   io.Reader
	size int
	done bool
}

// NewFixed returns a splitter that cuts rd into chunks of size bytes (the
// last one may be shorter). If size is not positive, Next reports it.
func NewFixed(rd io.Reader, size int) Splitter {
	if size <= 0 {
		return failed{fmt.Errorf("chunker: fixed chunk size %d must be positive", size)}
	}
	return &fixed{rd: rd, size: size}
}

// MaxChunk is the size of the largest chunk Next returns.
func (f *fixed) MaxChunk() int { return f.size }

func (f *fixed) Next(buf []byte) ([]byte, error) {
	if f.done {
		return nil, io.EOF
	}
	if cap(buf) < f.size {
		buf = make([]byte, f.size)
	}
	n, err := io.ReadFull(f.rd, buf[:f.size])
	switch {
	case err == nil:
		return buf[:n], nil
	case err == io.EOF, err == io.ErrUnexpectedEOF:
		// ReadFull reports EOF only when nothing was read, and
		// ErrUnexpectedEOF for a short final chunk.
		f.done = true
		if n == 0 {
			return nil, io.EOF
		}
		return buf[:n], nil
	default:
		return nil, fmt.Errorf("chunker: reading input: %w", err)
	}
}
