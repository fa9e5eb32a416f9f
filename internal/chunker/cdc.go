package chunker

import (
	"fmt"
	"io"
	"sync"
)

// minRead is the size of cdc's read window: few, large reads keep system
// call and backend overhead off the hot path.
const minRead = 1 << 20

// windows recycles read windows: a backup chunks one file after another,
// and a window per file was most of the chunker's allocation.
var windows = sync.Pool{New: func() any { return new([minRead]byte) }}

func getWindow(size int) []byte {
	if size != minRead {
		return make([]byte, size)
	}
	return windows.Get().(*[minRead]byte)[:]
}

// putWindow returns a window once nothing refers to it.
func putWindow(b []byte) {
	if len(b) == minRead {
		windows.Put((*[minRead]byte)(b))
	}
}

// cdc is the FastCDC splitter (Xia et al., "FastCDC", USENIX ATC 2016, and
// IEEE TPDS 2020): a gear rolling hash, no hashing during the first Min
// bytes of a chunk, normalized chunking around Avg, and a forced cut at Max.
//
// It streams: bytes are read into a fixed window of readSize bytes and
// copied into the caller's buffer as they are scanned, with the scan state
// (bytes in the chunk so far, the hash) carried from one window to the
// next. A cut depends only on the bytes before it, so the chunks are the
// ones a scan of the whole input would cut, and memory is the window, not
// the 8 MiB a chunk may reach (a look-ahead of Max per reader was the
// largest live allocation of a backup).
type cdc struct {
	rd            io.Reader
	p             Params
	gear          *[256]uint64
	strict, loose uint64
	readSize      int

	// buf[start:end] is read but not yet scanned.
	buf        []byte
	start, end int
	eof        bool
	err        error
}

// New returns a FastCDC splitter over rd whose gear table is derived from
// seed. If p is invalid, Next reports why.
func New(rd io.Reader, p Params, seed [32]byte) Splitter {
	if err := p.Validate(); err != nil {
		return failed{err}
	}
	return newCDC(rd, p, seed, minRead)
}

// newCDC skips the size limits of Validate, so tests and fuzzing can use
// tiny chunks; p must pass check.
func newCDC(rd io.Reader, p Params, seed [32]byte, readSize int) Splitter {
	if err := p.check(); err != nil {
		return failed{err}
	}
	c := &cdc{rd: rd, p: p, gear: gearTable(seed), readSize: readSize}
	c.strict, c.loose = p.masks()
	return c
}

func (c *cdc) Next(buf []byte) ([]byte, error) {
	out := buf[:0]
	var fp uint64
	for {
		if c.start == c.end {
			c.refill()
			if c.err != nil {
				return nil, c.err
			}
			if c.start == c.end { // end of input
				putWindow(c.buf)
				c.buf = nil
				if len(out) == 0 {
					return nil, io.EOF
				}
				return out, nil
			}
		}
		data := c.buf[c.start:c.end]
		n, cut := c.scan(data, len(out), &fp)
		out = c.grow(out, n)
		out = append(out, data[:n]...)
		c.start += n
		if cut {
			return out, nil
		}
	}
}

// grow makes room for n more bytes in out. A new buffer starts at twice
// the average chunk, which holds nearly every chunk (normalized chunking
// cuts soon after Avg), and a larger one doubles up to Max: append's own
// growth for large slices is a quarter at a time, which copied a chunk of
// several MiB over and over as it was assembled from windows, and
// buffers of odd sizes were dropped by the archiver's pool (see
// archiver.putBuf) instead of reused.
func (c *cdc) grow(out []byte, n int) []byte {
	need := len(out) + n
	if need <= cap(out) {
		return out
	}
	size := max(need, min(max(2*cap(out), 2*c.p.Avg), c.p.Max))
	// The append of a make is compiled to one allocation that clears only
	// the new room (the idiom of slices.Grow).
	return append(out[:len(out):len(out)], make([]byte, size-len(out))...)[:len(out)]
}

// refill reads the next window once the previous one is scanned; at the end
// of the input it leaves the window empty.
func (c *cdc) refill() {
	if c.eof || c.err != nil {
		return
	}
	if c.buf == nil {
		c.buf = getWindow(c.readSize)
	}
	c.start, c.end = 0, 0
	for empty := 0; c.end == 0; {
		n, err := c.rd.Read(c.buf)
		if n < 0 || n > len(c.buf) {
			c.err = fmt.Errorf("chunker: reader returned an invalid count %d", n)
			return
		}
		c.end = n
		switch {
		case err == io.EOF:
			c.eof = true
			return
		case err != nil:
			c.err = fmt.Errorf("chunker: reading input: %w", err)
			return
		case n == 0:
			if empty++; empty >= noProgressLimit {
				c.err = fmt.Errorf("chunker: reading input: %w", io.ErrNoProgress)
				return
			}
		}
	}
}

// scan continues a chunk that already holds have bytes (fp is its hash so
// far) over data. It returns how many bytes of data belong to the chunk and
// whether the chunk ends there: at a cut point, or at Max.
func (c *cdc) scan(data []byte, have int, fpp *uint64) (int, bool) {
	p := c.p
	i := 0
	if have < p.Min { // no cut before Min: copy without hashing
		i = min(len(data), p.Min-have)
		if have+i < p.Min {
			return i, false
		}
	}
	// A local copy of the table and masks keeps the loops free of
	// pointer loads and bounds checks.
	gear := *c.gear
	strict, loose := c.strict, c.loose
	fp := *fpp
	// fp+fp+g (rather than fp<<1+g) compiles to one LEA, so the loop
	// carries a one-cycle dependency chain: about twice as fast.
	if pos := have + i; pos < p.Avg {
		for _, b := range data[i:min(len(data), i+p.Avg-pos)] {
			fp = fp + fp + gear[b]
			i++
			if fp&strict == 0 {
				return i, true
			}
		}
	}
	if pos := have + i; pos >= p.Avg && pos < p.Max {
		for _, b := range data[i:min(len(data), i+p.Max-pos)] {
			fp = fp + fp + gear[b]
			i++
			if fp&loose == 0 {
				return i, true
			}
		}
	}
	*fpp = fp
	return i, have+i >= p.Max
}
