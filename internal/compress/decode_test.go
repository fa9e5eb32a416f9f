package compress

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecompressLimit(t *testing.T) {
	c := NewCodec(Fastest)
	zeros := make([]byte, 1<<20)
	bomb, ok := c.Compress(nil, zeros)
	if !ok || len(bomb) > 1000 {
		t.Fatalf("1 MiB of zeros compressed to %d bytes (ok=%v)", len(bomb), ok)
	}
	for name, dst := range map[string][]byte{
		"nil dst":      nil,
		"roomy dst":    make([]byte, 0, 2<<20), // capacity must not raise the limit
		"prefixed dst": []byte("abc"),
	} {
		if _, err := c.Decompress(dst, bomb, 1000); err == nil || !strings.Contains(err.Error(), "1000") {
			t.Errorf("%s: Decompress with maxLen 1000 returned %v, want an error naming the limit", name, err)
		}
	}
	if got, err := c.Decompress(nil, bomb, len(zeros)); err != nil || !bytes.Equal(got, zeros) {
		t.Fatalf("Decompress with maxLen = size: %d bytes, %v", len(got), err)
	}
	if _, err := c.Decompress(nil, bomb, len(zeros)-1); err == nil {
		t.Fatal("Decompress with maxLen one short succeeded")
	}
}

// TestDecompressLimitWithoutSize covers frames that do not declare their
// size (not ours, but valid zstd): the limit must hold while decoding.
func TestDecompressLimitWithoutSize(t *testing.T) {
	c := NewCodec(Fastest)
	zeros := make([]byte, 1<<20)
	one, _ := c.Compress(nil, zeros)
	// Two frames: the first header states only the first frame's size.
	two := append(append([]byte{}, one...), one...)
	if _, err := c.Decompress(nil, two, 1<<20); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("two 1 MiB frames with maxLen 1 MiB: %v, want a limit error", err)
	}
	got, err := c.Decompress(nil, two, 2<<20)
	if err != nil || len(got) != 2<<20 {
		t.Fatalf("two 1 MiB frames with maxLen 2 MiB: %d bytes, %v", len(got), err)
	}
	stream := streamFrame(t, zeros)
	if _, err := c.Decompress(nil, stream, 1000); err == nil {
		t.Fatal("frame without a size: limit not enforced")
	}
	if got, err := c.Decompress(nil, stream, len(zeros)); err != nil || !bytes.Equal(got, zeros) {
		t.Fatalf("frame without a size: %d bytes, %v", len(got), err)
	}
}

func TestDecompressGarbage(t *testing.T) {
	c := NewCodec(Default)
	good, _ := c.Compress(nil, textData(10000))
	truncated := good[:len(good)/2]
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	for name, src := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("this is not a zstd frame at all"),
		"magic":     {0x28, 0xb5, 0x2f, 0xfd},
		"truncated": truncated,
	} {
		if _, err := c.Decompress(nil, src, 1<<20); err == nil {
			t.Errorf("%s: Decompress succeeded", name)
		}
	}
	// A flipped byte may still decode (there is no checksum: sealing
	// authenticates), but must not panic or exceed the limit.
	if got, err := c.Decompress(nil, flipped, 10000); err == nil && len(got) > 10000 {
		t.Errorf("flipped: %d bytes over the limit", len(got))
	}
	if _, err := c.Decompress(nil, good, -1); err == nil {
		t.Error("negative maxLen accepted")
	}
}
