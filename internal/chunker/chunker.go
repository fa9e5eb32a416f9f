// Package chunker cuts a stream into chunks: content-defined (FastCDC with a
// keyed gear table) for files, fixed-size for PostgreSQL relation files.
package chunker

// Splitter yields the chunks of a stream in order.
type Splitter interface {
	// Next returns the next chunk. buf is a buffer the caller lends (it
	// may be nil or have any capacity): the chunk is copied into buf[:0]
	// (grown with a new allocation if too small) and that slice is
	// returned, so the caller owns the result and may keep it while Next
	// is called again with another buffer. Next returns io.EOF after the
	// last chunk. Read errors are returned wrapped.
	Next(buf []byte) ([]byte, error)
}

// failed is a Splitter that only reports an error, for constructors that
// cannot return one.
type failed struct{ err error }

func (f failed) Next([]byte) ([]byte, error) { return nil, f.err }

// noProgressLimit bounds consecutive empty reads, as bufio does, so a broken
// reader cannot spin Next forever.
const noProgressLimit = 100
