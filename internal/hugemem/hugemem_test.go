package hugemem

import (
	"bytes"
	"testing"
)

func TestAlloc(t *testing.T) {
	for _, n := range []int{1, 4096, 2<<20 - 1, 2 << 20, 16<<20 + 12345} {
		b := Alloc(n)
		m := b.Bytes()
		if len(m) != n {
			t.Fatalf("Alloc(%d): %d bytes", n, len(m))
		}
		if !bytes.Equal(m, make([]byte, n)) {
			t.Fatalf("Alloc(%d): not zeroed", n)
		}
		for i := range m {
			m[i] = byte(i)
		}
		if m[n-1] != byte(n-1) {
			t.Fatal("write lost")
		}
		b.Free()
		b.Free()
		if b.Bytes() != nil {
			t.Fatal("Bytes after Free")
		}
	}
}
