package hugemem

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestCopyCached(t *testing.T) {
	src := make([]byte, 3*cachedPiece+17)
	for i := range src {
		src[i] = byte(rand.Uint32())
	}
	for _, n := range []int{0, 1, cachedPiece - 1, cachedPiece, cachedPiece + 1, 2 * cachedPiece, len(src)} {
		for _, extra := range []int{-1, 0, 1} {
			m := max(0, n+extra)
			dst := make([]byte, m)
			want := make([]byte, m)
			if got, wantN := CopyCached(dst, src[:n]), copy(want, src[:n]); got != wantN || !bytes.Equal(dst, want) {
				t.Fatalf("CopyCached(%d bytes into %d) = %d, want %d and the same bytes", n, m, got, wantN)
			}
		}
	}
}
