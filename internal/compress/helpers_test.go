package compress

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// streamFrame encodes src with the streaming writer, whose frames do not
// declare their decoded size.
func streamFrame(t testing.TB, src []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(src); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(b.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("streamed frame header: %+v, %v; want no content size", h, err)
	}
	return b.Bytes()
}
