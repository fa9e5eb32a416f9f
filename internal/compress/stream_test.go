package compress

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"
)

// TestCompressStream: every size around the piece boundaries, data that
// compresses and data that does not, on one core and several: the stream
// decodes to the input with nestguard's decoder and a plain one, declares
// its size, stays within StreamBound, and keeps dst's prefix.
func TestCompressStream(t *testing.T) {
	text := textData(4*StreamPiece + 3)
	random := randomData(4*StreamPiece+3, 9)
	mixed := append(append([]byte{}, text[:2*StreamPiece]...), random[:2*StreamPiece]...)
	plain, _ := zstd.NewReader(nil)
	defer plain.Close()
	for _, procs := range []int{1, 4} {
		old := runtime.GOMAXPROCS(procs)
		c := NewCodec(Fastest)
		for _, data := range []struct {
			name string
			b    []byte
		}{{"text", text}, {"random", random}, {"mixed", mixed}} {
			for _, n := range []int{1, 1000, StreamPiece - 1, StreamPiece, StreamPiece + 1, 2*StreamPiece + 17, 4 * StreamPiece} {
				src := data.b[:n]
				// One byte at a time at first: short reads must not
				// make short pieces.
				rd := io.MultiReader(iotest.OneByteReader(bytes.NewReader(src[:min(n, 100)])), bytes.NewReader(src[min(n, 100):]))
				out, err := c.CompressStream([]byte("prefix"), rd, n)
				if err != nil {
					t.Fatalf("procs %d, %s, %d bytes: %v", procs, data.name, n, err)
				}
				if string(out[:6]) != "prefix" {
					t.Fatalf("procs %d, %s, %d bytes: the prefix was not kept", procs, data.name, n)
				}
				body := out[6:]
				if len(body) > StreamBound(n) {
					t.Fatalf("procs %d, %s, %d bytes: %d bytes out, over StreamBound's %d", procs, data.name, n, len(body), StreamBound(n))
				}
				if got, ok := DecodedSize(body); !ok || got != n {
					t.Fatalf("procs %d, %s, %d bytes: declared size %d, %v", procs, data.name, n, got, ok)
				}
				got, err := c.Decompress(nil, body, n)
				if err != nil || !bytes.Equal(got, src) {
					t.Fatalf("procs %d, %s, %d bytes: round trip: err=%v equal=%v", procs, data.name, n, err, bytes.Equal(got, src))
				}
				if got, err := plain.DecodeAll(body, nil); err != nil || !bytes.Equal(got, src) {
					t.Fatalf("procs %d, %s, %d bytes: plain decoder: err=%v equal=%v", procs, data.name, n, err, bytes.Equal(got, src))
				}
			}
		}
		runtime.GOMAXPROCS(old)
	}
}

// TestCompressStreamShortAndFailingReaders: fewer bytes than announced is
// io.ErrUnexpectedEOF, a reader's error is returned, both with dst as
// given; bytes past n are left unread.
func TestCompressStreamShortAndFailingReaders(t *testing.T) {
	c := NewCodec(Fastest)
	src := textData(3*StreamPiece + 5)
	for _, short := range []int{0, 10, StreamPiece, 3 * StreamPiece} {
		out, err := c.CompressStream([]byte("pre"), bytes.NewReader(src[:short]), len(src))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%d of %d bytes: err = %v, want io.ErrUnexpectedEOF", short, len(src), err)
		}
		if string(out) != "pre" {
			t.Fatalf("%d of %d bytes: dst = %q after an error, want it as given", short, len(src), out)
		}
	}
	boom := errors.New("disk on fire")
	rd := io.MultiReader(bytes.NewReader(src[:2*StreamPiece]), iotest.ErrReader(boom))
	if _, err := c.CompressStream(nil, rd, len(src)); !errors.Is(err, boom) {
		t.Fatalf("failing reader: err = %v, want %v", err, boom)
	}
	r := bytes.NewReader(src)
	if _, err := c.CompressStream(nil, r, 2*StreamPiece); err != nil {
		t.Fatal(err)
	}
	if r.Len() != len(src)-2*StreamPiece {
		t.Fatalf("%d bytes left unread, want %d", r.Len(), len(src)-2*StreamPiece)
	}
	if _, err := c.CompressStream(nil, r, -1); err == nil {
		t.Fatal("a negative size was accepted")
	}
}

// TestCompressStreamRatio: pieces cost little ratio on data with matches
// within a window: under 2% more than Compress's two large pieces.
func TestCompressStreamRatio(t *testing.T) {
	src := make([]byte, 16<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range src {
		src[i] = "wal,record,heap,insert,commit,"[rng.IntN(30)]
	}
	c := NewCodec(Fastest)
	whole, ok := c.Compress(nil, src)
	if !ok {
		t.Fatal("not compressed")
	}
	streamed, err := c.CompressStream(nil, bytes.NewReader(src), len(src))
	if err != nil {
		t.Fatal(err)
	}
	if float64(len(streamed)) > 1.02*float64(len(whole)) {
		t.Fatalf("streamed %d bytes, Compress %d: pieces cost more than 2%%", len(streamed), len(whole))
	}
}

// TestCompressPieces: input in memory gives the very bytes CompressStream
// gives reading it, on one core and several, around the piece boundaries.
func TestCompressPieces(t *testing.T) {
	text := textData(3*StreamPiece + 5)
	for _, procs := range []int{1, 4} {
		old := runtime.GOMAXPROCS(procs)
		c := NewCodec(Fastest)
		for _, n := range []int{0, 1, StreamPiece - 1, StreamPiece, StreamPiece + 1, 3*StreamPiece + 5} {
			src := text[:n]
			want, err := c.CompressStream([]byte("pre"), bytes.NewReader(src), n)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.CompressPieces([]byte("pre"), src)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("procs %d, %d bytes: %v, equal %v", procs, n, err, bytes.Equal(got, want))
			}
		}
		runtime.GOMAXPROCS(old)
	}
}
