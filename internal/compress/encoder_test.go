package compress

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Frames the build's encoder writes declare their decoded size, which
// Decompress sizes its output by, at every level. (klauspost leaves it out
// of frames of a few bytes, where it saves nothing.)
func TestFramesDeclareSize(t *testing.T) {
	for _, l := range []Level{Fastest, Default, Better, Best} {
		enc := newEncoder(l, 2)
		for _, n := range []int{1, 100, 64 << 10, 3 << 20} {
			src := textData(n)
			out, err := enc.appendFrame([]byte("prefix"), src)
			if err != nil {
				t.Fatalf("level %d, %d bytes: %v", l, n, err)
			}
			if !bytes.HasPrefix(out, []byte("prefix")) {
				t.Fatalf("level %d, %d bytes: dst's bytes were overwritten", l, n)
			}
			var h zstd.Header
			if err := h.Decode(out[6:]); err != nil || (n >= 64<<10 || Implementation != pureGo) && (!h.HasFCS || h.FrameContentSize != uint64(n)) {
				t.Fatalf("level %d, %d bytes: header %+v, %v; want a declared size of %d", l, n, h, err, n)
			}
		}
	}
}

// A repository written by one build is read by the other: frames from
// klauspost's pure-Go encoder (the CGO_ENABLED=0 build) decode, and ours
// decode with klauspost's decoder, which both builds use.
func TestFramesOfEitherBuildDecode(t *testing.T) {
	src := textData(1 << 20)
	goEnc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		t.Fatal(err)
	}
	c := NewCodec(Default)
	ours, ok := c.Compress(nil, src)
	if !ok {
		t.Fatal("text did not compress")
	}
	for name, frame := range map[string][]byte{
		"pure Go":                             goEnc.EncodeAll(src, nil),
		"this build (" + Implementation + ")": ours,
	} {
		got, err := c.Decompress(nil, frame, len(src))
		if err != nil || !bytes.Equal(got, src) {
			t.Errorf("frame from %s: %d bytes, %v; want the %d bytes compressed", name, len(got), err, len(src))
		}
	}
}

// The encoder is used from many goroutines at once (the pipeline's
// workers and the parallel pieces of one large blob), with inputs of both
// size classes.
func TestEncoderConcurrentUse(t *testing.T) {
	enc := newEncoder(Default, 1)
	c := NewCodec(Fastest)
	done := make(chan error)
	for i := range 8 {
		go func() {
			src := textData(i*50<<10 + 1)
			out, err := enc.appendFrame(nil, src)
			if err == nil {
				var got []byte
				got, err = c.Decompress(nil, out, len(src))
				if err == nil && !bytes.Equal(got, src) {
					err = bytes.ErrTooLarge
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
