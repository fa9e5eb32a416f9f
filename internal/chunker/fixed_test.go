package chunker

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"
)

func TestFixed(t *testing.T) {
	for _, tc := range []struct {
		n, size int
		want    []int
	}{
		{3*8192 + 100, 8192, []int{8192, 8192, 8192, 100}},
		{2 * 8192, 8192, []int{8192, 8192}},
		{10, 8192, []int{10}},
		{5, 1, []int{1, 1, 1, 1, 1}},
	} {
		data := randomData(tc.n, 13)
		// HalfReader: short reads must not shorten chunks.
		cs := chunks(t, NewFixed(iotest.HalfReader(bytes.NewReader(data)), tc.size))
		if !slices.Equal(lengths(cs), tc.want) {
			t.Errorf("%d bytes in %d-byte chunks: sizes %v, want %v", tc.n, tc.size, lengths(cs), tc.want)
		}
		if !bytes.Equal(bytes.Join(cs, nil), data) {
			t.Errorf("%d bytes in %d-byte chunks: chunks do not reassemble the input", tc.n, tc.size)
		}
	}
}

func TestFixedBuffer(t *testing.T) {
	s := NewFixed(bytes.NewReader(randomData(3*8192, 14)), 8192)
	big := make([]byte, 0, 8192)
	c, err := s.Next(big)
	if err != nil || &c[0] != &big[:1][0] {
		t.Fatalf("Next(%d-byte cap) = %d bytes, %v; want the chunk in the lent buffer", cap(big), len(c), err)
	}
	tiny := make([]byte, 0, 100)
	c, err = s.Next(tiny)
	if err != nil || len(c) != 8192 || &c[0] == &tiny[:1][0] {
		t.Fatalf("Next(%d-byte cap) = %d bytes, %v; want 8192 bytes in a new buffer", cap(tiny), len(c), err)
	}
}

func TestFixedErrors(t *testing.T) {
	if _, err := NewFixed(bytes.NewReader([]byte("x")), 0).Next(nil); err == nil || err == io.EOF {
		t.Fatalf("size 0: Next returned %v, want an error", err)
	}
	boom := errors.New("boom")
	s := NewFixed(&patternReader{data: randomData(100, 15), err: boom}, 64)
	if c, err := s.Next(nil); err != nil || len(c) != 64 {
		t.Fatalf("first chunk: %d bytes, %v", len(c), err)
	}
	if _, err := s.Next(nil); !errors.Is(err, boom) {
		t.Fatalf("Next returned %v, want an error wrapping %v", err, boom)
	}
}
