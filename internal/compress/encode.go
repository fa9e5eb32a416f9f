package compress

import "math"

// Sampling: above sampleAbove bytes, Compress first compresses samples of
// sampleLen bytes from the start, middle and end, and stores the input raw
// unless they shrink. A few µs then save a full pass over incompressible
// data.
const (
	sampleAbove = 64 << 10
	sampleLen   = 8 << 10
)

// worth reports whether packing n bytes into c bytes saves at least 1/32
// (about 3%): less does not pay for the decompression on restore.
func worth(c, n int) bool {
	return c <= n-n/32 && c < n
}

// Compress appends the zstd frame of src to dst and reports whether it is
// worth storing: false when the output would not be at least ~3% smaller
// than src (the caller then stores src raw and ignores the returned slice).
func (c *Codec) Compress(dst, src []byte) ([]byte, bool) {
	if len(src) > sampleAbove && !c.samplesShrink(src) {
		return dst, false
	}
	if out, ok := c.compressParallel(dst, src); ok {
		return out, worth(len(out)-len(dst), len(src))
	}
	out, err := c.enc.appendFrame(dst, src)
	if err != nil {
		return dst, false
	}
	return out, worth(len(out)-len(dst), len(src))
}

// samplesShrink reports whether three samples of src promise to shrink
// enough: by their order-0 entropy (what entropy coding of literals saves)
// or, failing that, by compressing them (what matches save). The entropy
// test matters: the fastest zstd level never entropy-codes literals, so a
// match-only probe calls text without repeats incompressible.
func (c *Codec) samplesShrink(src []byte) bool {
	mid := len(src)/2 - sampleLen/2
	var hist [256]int
	for _, off := range [...]int{0, mid, len(src) - sampleLen} {
		for _, b := range src[off : off+sampleLen] {
			hist[b]++
		}
	}
	if entropyBits(&hist, 3*sampleLen) < maxWorthEntropy {
		return true
	}
	bp := c.scratch.Get().(*[]byte)
	defer c.scratch.Put(bp)
	in, out := 0, 0
	for _, off := range [...]int{0, mid, len(src) - sampleLen} {
		s := src[off : off+sampleLen]
		out1, err := c.probe.appendFrame((*bp)[:0], s)
		if err != nil {
			return false
		}
		*bp = out1
		in += len(s)
		out += len(*bp)
	}
	return worth(out, in)
}

// maxWorthEntropy is the order-0 entropy, in bits per byte, below which
// entropy coding alone saves at least 1/32 of the input (8 * 31/32 = 7.75),
// with a margin for the coding tables.
const maxWorthEntropy = 7.6

// entropyBits returns the order-0 entropy of a histogram of n bytes.
func entropyBits(hist *[256]int, n int) float64 {
	var h float64
	for _, c := range hist {
		if c > 0 {
			p := float64(c) / float64(n)
			h -= p * math.Log2(p)
		}
	}
	return h
}
