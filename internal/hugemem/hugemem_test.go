package hugemem

import (
	"bytes"
	"testing"
	"unsafe"
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

func TestPool(t *testing.T) {
	p := Pool{Keep: 1}
	a := p.Get(3 << 20)
	a.Bytes()[0] = 7
	p.Put(a)
	if b := p.Get(1 << 20); b != a || b.Bytes()[0] != 7 {
		t.Fatal("a kept buffer was not reused")
	} else {
		p.Put(b)
	}
	if c := p.Get(4 << 20); c == a || len(c.Bytes()) < 4<<20 {
		t.Fatal("a buffer too small was handed out")
	} else {
		p.Put(c) // the pool is full: freed
		if c.Bytes() != nil {
			t.Fatal("a buffer over Keep was kept")
		}
	}
	p.Close()
	if a.Bytes() != nil {
		t.Fatal("Close did not free the kept buffer")
	}
	d := p.Get(1)
	p.Put(d)
	if d.Bytes() != nil {
		t.Fatal("a buffer given back after Close was kept")
	}
}

func TestPoolMappedRelease(t *testing.T) {
	var p Pool
	h := Heap(1 << 20)
	p.Put(h) // a heap buffer is never handed out as mapped
	b, ok := p.GetMapped(1 << 20)
	if !ok {
		t.Skip("no mappings here")
	}
	if b == h || b.free == nil {
		t.Fatal("GetMapped handed out a heap buffer")
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(b.Bytes())))%4096 != 0 {
		t.Fatal("a mapped buffer is not page-aligned")
	}
	p.Put(b)
	if p.Len() != 2 {
		t.Fatalf("Len %d, want 2", p.Len())
	}
	if c, _ := p.GetMapped(1 << 20); c != b {
		t.Fatal("the kept mapped buffer was not reused")
	} else {
		p.Put(c)
	}
	p.Release()
	if p.Len() != 0 || b.Bytes() != nil {
		t.Fatal("Release kept or did not free its buffers")
	}
	d := Alloc(1)
	p.Put(d) // after Release the pool keeps again
	if p.Len() != 1 {
		t.Fatal("a pool released does not keep buffers given back")
	}
	p.Close()
}
