package backendtest

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
)

func testRangedLoad(t *testing.T, be backend.Backend) {
	data := randomData(3, 1000)
	h := handle(backend.PackFile, data)
	save(t, be, h, data)
	for _, r := range []struct{ off, n, from, to int64 }{
		{0, 0, 0, 1000},       // whole object
		{10, 0, 10, 1000},     // offset to the end
		{10, 100, 10, 110},    // offset and length
		{0, 1000, 0, 1000},    // exactly the object
		{900, 100, 900, 1000}, // range ending at the end
		{999, 1, 999, 1000},   // the last byte
		{1000, 0, 1000, 1000}, // offset at the end, to the end: nothing
	} {
		got := mustLoad(t, be, h, r.off, r.n)
		if !bytes.Equal(got, data[r.from:r.to]) {
			t.Errorf("Load(offset %d, length %d): got %d bytes, want bytes [%d, %d)", r.off, r.n, len(got), r.from, r.to)
		}
	}
}

// testRangePastEnd: a range the object does not cover fails with
// io.ErrUnexpectedEOF, either from Load or when reading, and never returns
// silently short.
func testRangePastEnd(t *testing.T, be backend.Backend) {
	data := randomData(4, 1000)
	h := handle(backend.PackFile, data)
	save(t, be, h, data)
	for _, r := range []struct{ off, n int64 }{
		{950, 100}, // starts inside, ends past the end
		{0, 1001},  // one byte too long
		{1000, 1},  // starts at the end
		{1500, 10}, // starts past the end
		{1001, 0},  // starts past the end, to the end
	} {
		got, err := load(be, h, r.off, r.n)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Load(offset %d, length %d) of a %d-byte object: %d bytes, error %v; want io.ErrUnexpectedEOF", r.off, r.n, len(data), len(got), err)
			continue
		}
		if r.off < int64(len(data)) && !bytes.Equal(got, data[r.off:][:len(got)]) {
			t.Errorf("Load(offset %d, length %d): the bytes before the error are wrong", r.off, r.n)
		}
	}
}
