package chunker

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// randomData returns n deterministic pseudo-random bytes.
func randomData(n int, seed uint64) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

func testSeed(b byte) [32]byte {
	var s [32]byte
	for i := range s {
		s[i] = b + byte(i)
	}
	return s
}

// chunks splits everything s yields, failing the test on an error.
func chunks(t testing.TB, s Splitter) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		c, err := s.Next(nil)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next after %d chunks: %v", len(out), err)
		}
		out = append(out, c)
	}
}

func lengths(cs [][]byte) []int {
	n := make([]int, len(cs))
	for i, c := range cs {
		n[i] = len(c)
	}
	return n
}

// checkChunks verifies that cs reassemble data and respect p's bounds.
func checkChunks(t testing.TB, data []byte, cs [][]byte, p Params) {
	t.Helper()
	if got := bytes.Join(cs, nil); !bytes.Equal(got, data) {
		t.Fatalf("chunks reassemble to %d bytes that differ from the %d input bytes", len(got), len(data))
	}
	for i, c := range cs {
		last := i == len(cs)-1
		if len(c) == 0 || len(c) > p.Max || (!last && len(c) < p.Min) {
			t.Fatalf("chunk %d of %d has %d bytes, outside [%d, %d]", i, len(cs), len(c), p.Min, p.Max)
		}
	}
}

// refCut is a plain restatement of the cut rule over a whole input, used
// to check that buffering and refills do not move boundaries.
func refCut(data []byte, p Params, seed [32]byte) []int {
	gear := gearTable(seed)
	strict, loose := p.masks()
	var out []int
	for len(data) > 0 {
		n := len(data)
		if n > p.Min {
			n = min(n, p.Max)
			var fp uint64
			for i := p.Min; i < n; i++ {
				fp = fp<<1 + gear[data[i]]
				mask := loose
				if i < p.Avg {
					mask = strict
				}
				if fp&mask == 0 {
					n = i + 1
					break
				}
			}
		}
		out = append(out, n)
		data = data[n:]
	}
	return out
}

// patternReader returns reads of the sizes in pattern, cyclically (0 means
// an empty read), then err (io.EOF if nil) once data is exhausted.
type patternReader struct {
	data    []byte
	pattern []int
	i       int
	err     error
}

func (r *patternReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := len(p)
	if len(r.pattern) > 0 {
		n = min(n, r.pattern[r.i%len(r.pattern)])
		r.i++
	}
	n = copy(p, r.data[:min(n, len(r.data))])
	r.data = r.data[n:]
	return n, nil
}

// blockReader is a BlockReader lending blocks of the pattern's sizes
// (zeros skipped), each in a buffer it scribbles over once the next block
// is asked for, so a chunker that keeps a lent block too long is caught.
type blockReader struct {
	patternReader
	buf []byte
}

func (r *blockReader) ReadBlock() ([]byte, error) {
	for i := range r.buf {
		r.buf[i] = 0xAA
	}
	if len(r.data) == 0 {
		if r.err != nil {
			return nil, r.err
		}
		return nil, io.EOF
	}
	n := len(r.data)
	for len(r.pattern) > 0 {
		n = min(n, r.pattern[r.i%len(r.pattern)])
		r.i++
		if n > 0 {
			break
		}
		n = len(r.data)
	}
	r.buf = append(r.buf[:0], r.data[:n]...)
	r.data = r.data[n:]
	return r.buf, nil
}

// rollRef is the gear hash rolled one byte at a time, the plain statement
// of roll's contract.
func rollRef(d []byte, fp uint64, gear *[256]uint64, mask uint64) (int, uint64, bool) {
	for i, b := range d {
		fp = fp<<1 + gear[b]
		if fp&mask == 0 {
			return i + 1, fp, true
		}
	}
	return len(d), fp, false
}
