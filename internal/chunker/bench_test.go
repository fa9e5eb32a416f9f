package chunker

import (
	"bytes"
	"io"
	"testing"
)

func benchmarkSplitter(b *testing.B, split func(io.Reader) Splitter) {
	data := randomData(64<<20, 16)
	buf := make([]byte, 0, DefaultParams().Max)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		s := split(bytes.NewReader(data))
		for {
			if _, err := s.Next(buf); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkChunker measures FastCDC with the default sizes on random data,
// including the copies into the caller's buffer.
func BenchmarkChunker(b *testing.B) {
	benchmarkSplitter(b, func(rd io.Reader) Splitter { return New(rd, DefaultParams(), testSeed(1)) })
}

func BenchmarkFixed(b *testing.B) {
	benchmarkSplitter(b, func(rd io.Reader) Splitter { return NewFixed(rd, 1<<20) })
}

// BenchmarkCut measures the hash loop alone over one maximal window.
func BenchmarkCut(b *testing.B) {
	p := DefaultParams()
	c := newCDC(nil, p, testSeed(1), minRead).(*cdc)
	data := make([]byte, p.Max) // zeros: no cut, the loop runs to Max
	b.SetBytes(int64(p.Max - p.Min))
	for b.Loop() {
		var fp uint64
		if n, cut := c.scan(data, 0, &fp); n != p.Max || !cut {
			b.Fatalf("cut at %d (%v)", n, cut)
		}
	}
}
