package chunker

import (
	"fmt"
	"io"
	"sync"

	"github.com/nestguard/nestguard/internal/hugemem"
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
	gear          gears
	strict, loose uint64
	readSize      int

	// buf[start:end] is read but not yet scanned.
	buf        []byte
	start, end int
	eof        bool
	err        error
	blocks     BlockReader // rd, if it is one: buf is then its block
}

// BlockReader is a reader that can lend its own buffer: the chunker then
// scans each block where it lies instead of copying it into a window of
// its own first (the archiver's reader of large files: that copy was 3%
// of the CPU time of a backup of one).
type BlockReader interface {
	io.Reader
	// ReadBlock returns the next bytes of the stream, at least one, in
	// memory that stays valid and unchanged until the next call; or no
	// bytes and an error, io.EOF at the end.
	ReadBlock() ([]byte, error)
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
	c := &cdc{rd: rd, p: p, gear: newGears(seed), readSize: readSize}
	c.blocks, _ = rd.(BlockReader)
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
				if c.blocks == nil {
					putWindow(c.buf)
				}
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
		out = out[:len(out)+n]
		hugemem.CopyCached(out[len(out)-n:], data[:n])
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
	if c.blocks != nil {
		b, err := c.blocks.ReadBlock()
		c.buf, c.start, c.end = b, 0, len(b)
		switch {
		case err == io.EOF:
			c.eof = true
		case err != nil:
			c.err = fmt.Errorf("chunker: reading input: %w", err)
		case len(b) == 0:
			c.err = fmt.Errorf("chunker: reading input: %w", io.ErrNoProgress)
		}
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
	fp := *fpp
	if pos := have + i; pos < p.Avg {
		n, f, cut := roll(data[i:min(len(data), i+p.Avg-pos)], fp, c.gear, c.strict)
		i += n
		fp = f
		if cut {
			return i, true
		}
	}
	if pos := have + i; pos >= p.Avg && pos < p.Max {
		n, f, cut := roll(data[i:min(len(data), i+p.Max-pos)], fp, c.gear, c.loose)
		i += n
		fp = f
		if cut {
			return i, true
		}
	}
	*fpp = fp
	return i, have+i >= p.Max
}

// rollGo continues the gear hash fp over d, fp = 2*fp + gear[b] for each
// byte b, and stops after the first byte where fp&mask == 0 (a cut). It
// returns how many bytes of d it consumed, the hash after them, and
// whether it stopped at a cut.
//
// Rolling one byte at a time makes every byte wait for the previous one's
// hash: a shift-and-add (one LEA, two cycles on current x86) per byte.
// Four bytes at a time, the hash after each of them is the hash before
// the four shifted by 1..4 plus a sum of the four table values that does
// not depend on it (t1, t2, t3 below): the loop then carries one shift
// and one add per four bytes, and the rest overlaps. Arithmetic is mod
// 2^64 either way, so the hashes, and the cuts, are the same. On amd64,
// roll is this loop in assembly (roll1), after 64 bytes at a time with
// AVX-512 where the CPU has it (rollBlocks); elsewhere, this function.
func rollGo(d []byte, fp uint64, gear *[256]uint64, mask uint64) (int, uint64, bool) {
	i := 0
	for ; i+4 <= len(d); i += 4 {
		b := d[i : i+4 : i+4]
		g0, g1, g2, g3 := gear[b[0]], gear[b[1]], gear[b[2]], gear[b[3]]
		t1 := g0<<1 + g1
		t2 := t1<<1 + g2
		t3 := t2<<1 + g3
		if f := fp<<1 + g0; f&mask == 0 {
			return i + 1, f, true
		}
		if f := fp<<2 + t1; f&mask == 0 {
			return i + 2, f, true
		}
		if f := fp<<3 + t2; f&mask == 0 {
			return i + 3, f, true
		}
		fp = fp<<4 + t3
		if fp&mask == 0 {
			return i + 4, fp, true
		}
	}
	for ; i < len(d); i++ {
		fp = fp<<1 + gear[d[i]]
		if fp&mask == 0 {
			return i + 1, fp, true
		}
	}
	return len(d), fp, false
}
