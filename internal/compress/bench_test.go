package compress

import "testing"

func benchmarkCompress(b *testing.B, l Level, src []byte) {
	c := NewCodec(l)
	dst := make([]byte, 0, len(src)+1024)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		c.Compress(dst, src)
	}
}

func BenchmarkCompressText1MiB(b *testing.B)   { benchmarkCompress(b, Fastest, textData(1<<20)) }
func BenchmarkCompressRandom1MiB(b *testing.B) { benchmarkCompress(b, Fastest, randomData(1<<20, 1)) }

func BenchmarkCompressText1MiBBest(b *testing.B)   { benchmarkCompress(b, Best, textData(1<<20)) }
func BenchmarkCompressRandom1MiBBest(b *testing.B) { benchmarkCompress(b, Best, randomData(1<<20, 1)) }

func BenchmarkDecompress1MiB(b *testing.B) {
	c := NewCodec(Fastest)
	src := textData(1 << 20)
	z, _ := c.Compress(nil, src)
	dst := make([]byte, 0, len(src))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := c.Decompress(dst, z, len(src)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecompress1MiBAlloc lets Decompress allocate, as LoadBlob does
// when its buffer is small.
func BenchmarkDecompress1MiBAlloc(b *testing.B) {
	c := NewCodec(Fastest)
	src := textData(1 << 20)
	z, _ := c.Compress(nil, src)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := c.Decompress(nil, z, len(src)); err != nil {
			b.Fatal(err)
		}
	}
}
