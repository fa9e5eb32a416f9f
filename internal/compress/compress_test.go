package compress

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func randomData(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// textData returns n bytes of word salad: compressible like real text.
func textData(n int) []byte {
	words := strings.Fields("the quick brown fox jumps over a lazy dog while backups " +
		"of postgres write ahead log segments stream into packs with keyed ids and " +
		"content defined chunk boundaries that survive insertions")
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(" \n"[r.IntN(10)/9])
	}
	return b.Bytes()[:n]
}

func TestRoundTrip(t *testing.T) {
	inputs := map[string][]byte{
		"empty":       {},
		"text 1MiB":   textData(1 << 20),
		"text small":  textData(1000),
		"random 1MiB": randomData(1<<20, 1),
		"random 100":  randomData(100, 2),
		"zeros 8MiB":  make([]byte, 8<<20),
		// compressible in the middle only: the samples must see it.
		"mixed": append(append(randomData(200<<10, 3), textData(600<<10)...), randomData(200<<10, 4)...),
	}
	for _, l := range []Level{Fastest, Default, Better, Best} {
		c := NewCodec(l)
		for name, src := range inputs {
			// Callers prepend a flag byte: dst must be kept.
			out, ok := c.Compress([]byte{0x01}, src)
			if out[0] != 0x01 {
				t.Fatalf("level %d, %s: Compress overwrote dst", l, name)
			}
			if ok && len(out)-1 > len(src)-len(src)/32 {
				t.Errorf("level %d, %s: ok with %d bytes out of %d", l, name, len(out)-1, len(src))
			}
			if !ok {
				continue
			}
			got, err := c.Decompress([]byte("prefix"), out[1:], len(src))
			if err != nil {
				t.Fatalf("level %d, %s: %v", l, name, err)
			}
			if !bytes.Equal(got, append([]byte("prefix"), src...)) {
				t.Fatalf("level %d, %s: round trip differs", l, name)
			}
		}
	}
}

func TestWorthCompressing(t *testing.T) {
	c := NewCodec(Default)
	for _, tc := range []struct {
		name string
		src  []byte
		want bool
	}{
		{"empty", nil, false},
		{"random small", randomData(1000, 5), false},
		{"random 1MiB", randomData(1<<20, 6), false},
		{"text small", textData(2000), true},
		{"text 1MiB", textData(1 << 20), true},
		{"mixed", append(append(randomData(200<<10, 3), textData(600<<10)...), randomData(200<<10, 4)...), true},
	} {
		if _, ok := c.Compress(nil, tc.src); ok != tc.want {
			t.Errorf("%s: Compress reports %v, want %v", tc.name, ok, tc.want)
		}
	}
}

// TestEmptyFrame checks that even an unprofitable output decodes: the
// frame of empty input is valid zstd.
func TestEmptyFrame(t *testing.T) {
	c := NewCodec(Fastest)
	out, _ := c.Compress(nil, nil)
	got, err := c.Decompress(nil, out, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("Decompress(frame of nothing) = %d bytes, %v", len(got), err)
	}
}

// countingEncoder counts what an encoder is given.
type countingEncoder struct {
	encoder
	calls, bytes atomic.Int64
}

func (e *countingEncoder) appendFrame(dst, src []byte) ([]byte, error) {
	e.calls.Add(1)
	e.bytes.Add(int64(len(src)))
	return e.encoder.appendFrame(dst, src)
}

// Incompressible input is rejected from its samples alone: the encoder
// never sees it, and the probe sees at most the three samples. (What this
// costs is measured by BenchmarkCompress, not asserted here: timing does
// not belong in tests.)
func TestSampleRejectionReadsOnlySamples(t *testing.T) {
	c := NewCodec(Best)
	enc, probe := &countingEncoder{encoder: c.enc}, &countingEncoder{encoder: c.probe}
	c.enc, c.probe = enc, probe
	src := randomData(1<<20, 7)
	if _, ok := c.Compress(nil, src); ok {
		t.Fatal("random data reported compressible")
	}
	if n := enc.calls.Load(); n != 0 {
		t.Errorf("the encoder was given incompressible input %d times", n)
	}
	if n := probe.bytes.Load(); n > 3*sampleLen {
		t.Errorf("the probe compressed %d bytes, more than the three %d-byte samples", n, sampleLen)
	}
	// Compressible input of the same size does reach the encoder.
	if _, ok := c.Compress(nil, textData(1<<20)); !ok || enc.calls.Load() == 0 {
		t.Errorf("text: compressible %v, encoder calls %d", ok, enc.calls.Load())
	}
}

func TestConcurrentUse(t *testing.T) {
	c := NewCodec(Default)
	src := textData(200 << 10)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				z, ok := c.Compress(nil, src)
				if !ok {
					t.Error("text reported incompressible")
					return
				}
				got, err := c.Decompress(nil, z, len(src))
				if err != nil || !bytes.Equal(got, src) {
					t.Errorf("round trip: %d bytes, %v", len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// Text without long repeats compresses only by entropy coding; the
// fastest zstd level does none, so neither the probe nor the default level
// may rely on matches alone (a regression: small text files were stored raw).
func TestLowEntropyTextCompresses(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	src := make([]byte, 200<<10) // above the sampling threshold
	// Words of random letters: no repeats worth a match, ~4.5 bits a byte.
	for i := 0; i < len(src); {
		for n := 2 + rng.IntN(9); n > 0 && i < len(src); n-- {
			src[i] = byte('a' + rng.IntN(26))
			i++
		}
		if i < len(src) {
			src[i] = " \n"[min(1, rng.IntN(8))^1]
			i++
		}
	}
	for _, n := range []int{12 << 10, len(src)} {
		out, ok := NewCodec(Default).Compress(nil, src[:n])
		if !ok || len(out) > n*3/4 {
			t.Errorf("%d bytes of lowercase text: ok=%v, %d bytes out", n, ok, len(out))
		}
	}
	var hist [256]int
	for _, b := range src[:3*sampleLen] {
		hist[b]++
	}
	if h := entropyBits(&hist, 3*sampleLen); h > maxWorthEntropy {
		t.Errorf("lowercase words: entropy %.2f bits per byte, above the probe's %.2f", h, maxWorthEntropy)
	}
}

// Inputs above parallelAbove are compressed in pieces on several cores;
// the result must decode in one pass, respect maxLen, and stay a zstd
// stream any decoder reads.
func TestParallelFrames(t *testing.T) {
	src := make([]byte, 9<<20+123)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range src {
		src[i] = "ledger,EUR,settled,"[rng.IntN(19)]
	}
	c := NewCodec(Fastest)
	out, ok := c.Compress([]byte("prefix"), src)
	if !ok || string(out[:6]) != "prefix" {
		t.Fatalf("ok=%v", ok)
	}
	if _, par := declaredSize(out[6:]); !par && runtime.GOMAXPROCS(0) > 1 {
		t.Fatal("a 9 MiB input was not compressed in parallel pieces")
	}
	got, err := c.Decompress(nil, out[6:], len(src))
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("round trip: err=%v equal=%v", err, bytes.Equal(got, src))
	}
	if _, err := c.Decompress(nil, out[6:], len(src)-1); err == nil {
		t.Fatal("maxLen below the declared size accepted")
	}
	// A plain zstd decoder reads it too (the size frame is skippable).
	d, _ := zstd.NewReader(nil)
	plain, err := d.DecodeAll(out[6:], nil)
	if err != nil || !bytes.Equal(plain, src) {
		t.Fatalf("plain decoder: err=%v equal=%v", err, bytes.Equal(plain, src))
	}
}

// TestParallelFramesInPlace checks the pieces written into their rooms of
// dst and moved down: with as many pieces as GOMAXPROCS allows, a dst
// with room to spare, and pieces that shrink little (random halves) beside
// pieces that shrink much, so that frames end near their room's end.
func TestParallelFramesInPlace(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	src := make([]byte, 16<<20)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range src {
		if (i/(2<<20))%2 == 0 {
			src[i] = byte(rng.Uint32())
		} else {
			src[i] = "wal,record,heap,"[rng.IntN(16)]
		}
	}
	c := NewCodec(Fastest)
	for _, dst := range [][]byte{nil, []byte("prefix"), append(make([]byte, 0, 40<<20), "roomy"...)} {
		out, _ := c.Compress(dst, src)
		if string(out[:len(dst)]) != string(dst) {
			t.Fatalf("the prefix %q was not kept", dst)
		}
		if _, par := declaredSize(out[len(dst):]); !par {
			t.Fatal("a 16 MiB input was not compressed in parallel pieces")
		}
		got, err := c.Decompress(nil, out[len(dst):], len(src))
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("round trip after %q: err=%v equal=%v", dst, err, bytes.Equal(got, src))
		}
	}
}
