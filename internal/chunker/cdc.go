package chunker

import (
	"fmt"
	"io"
)

// minRead is the smallest read cdc issues once its buffer is grown: few,
// large reads keep system call and backend overhead off the hot path.
const minRead = 1 << 20

// cdc is the FastCDC splitter (Xia et al., "FastCDC", USENIX ATC 2016, and
// IEEE TPDS 2020): a gear rolling hash, no hashing during the first Min
// bytes of a chunk, normalized chunking around Avg, and a forced cut at Max.
type cdc struct {
	rd            io.Reader
	p             Params
	gear          *[256]uint64
	strict, loose uint64
	readSize      int

	// buf[start:end] is read but not yet returned. buf grows up to
	// Max+max(Max, readSize), so a refill after compaction is one large read.
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
	c.fill()
	if c.err != nil {
		return nil, c.err
	}
	if c.start == c.end {
		return nil, io.EOF
	}
	n := c.cut(c.buf[c.start:c.end])
	out := copyInto(buf, c.buf[c.start:c.start+n])
	c.start += n
	return out, nil
}

// fill reads until at least Max bytes are buffered or the input ends, so
// cut sees every byte a chunk may cover.
func (c *cdc) fill() {
	empty := 0
	for c.end-c.start < c.p.Max && !c.eof && c.err == nil {
		if len(c.buf)-c.end < c.readSize {
			c.makeRoom()
		}
		n, err := c.rd.Read(c.buf[c.end:])
		if n < 0 || n > len(c.buf)-c.end {
			c.err = fmt.Errorf("chunker: reader returned an invalid count %d", n)
			return
		}
		c.end += n
		switch {
		case err == io.EOF:
			c.eof = true
		case err != nil:
			c.err = fmt.Errorf("chunker: reading input: %w", err)
		case n == 0:
			if empty++; empty >= noProgressLimit {
				c.err = fmt.Errorf("chunker: reading input: %w", io.ErrNoProgress)
			}
		default:
			empty = 0
		}
	}
}

// makeRoom moves the unread bytes to the front of buf and grows it (up to
// its full size, doubling so small files stay cheap) until at least
// readSize bytes are free.
func (c *cdc) makeRoom() {
	if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	if len(c.buf)-c.end >= c.readSize {
		return
	}
	full := c.p.Max + max(c.p.Max, c.readSize)
	n := min(full, max(2*len(c.buf), c.end+c.readSize))
	nb := make([]byte, n)
	copy(nb, c.buf[:c.end])
	c.buf = nb
}

// cut returns the length of the chunk at the start of data, which holds at
// least Max bytes unless the input ends within them.
func (c *cdc) cut(data []byte) int {
	n := len(data)
	if n <= c.p.Min {
		return n
	}
	n = min(n, c.p.Max)
	normal := min(n, c.p.Avg)
	// A local copy of the table and masks keeps the loops free of
	// pointer loads and bounds checks.
	gear := *c.gear
	strict, loose := c.strict, c.loose
	var fp uint64
	i := c.p.Min
	// fp+fp+g (rather than fp<<1+g) compiles to one LEA, so the loop
	// carries a one-cycle dependency chain: about twice as fast.
	for _, b := range data[i:normal] {
		fp = fp + fp + gear[b]
		i++
		if fp&strict == 0 {
			return i
		}
	}
	for _, b := range data[i:n] {
		fp = fp + fp + gear[b]
		i++
		if fp&loose == 0 {
			return i
		}
	}
	return n
}
