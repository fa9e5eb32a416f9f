//go:build linux

package fipsinit

import (
	"os"
	"testing"
	"unsafe"
)

func TestMappingOf(t *testing.T) {
	maps := []byte(`00400000-00a00000 r-xp 00000000 fd:00 123 /usr/bin/nestguard
00a00000-00b00000 rw-p 00600000 fd:00 123 /usr/bin/nestguard
00b00000-02c00000 rw-p 00000000 00:00 0 
02c00000-02d00000 rw-p 00000000 00:00 0 [heap]
`)
	for _, c := range []struct {
		addr   uintptr
		lo, hi uintptr
		ok     bool
	}{
		{0x00b00000, 0x00b00000, 0x02c00000, true},
		{0x02bfffff, 0x00b00000, 0x02c00000, true},
		{0x00a00010, 0, 0, false}, // the file's data pages
		{0x02c00010, 0, 0, false}, // a named mapping
		{0x00500000, 0, 0, false}, // text
		{0x7f0000000000, 0, 0, false},
	} {
		lo, hi, ok := mappingOf(maps, c.addr)
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("mappingOf(%#x) = %#x, %#x, %v; want %#x, %#x, %v", c.addr, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
	if _, _, ok := mappingOf([]byte("garbage\n\n1-2 rw-p\n"), 1); ok {
		t.Error("a malformed line matched")
	}
}

// TestOwnMapping: this process's anchor is found in its maps, in an
// anonymous writable mapping.
func TestOwnMapping(t *testing.T) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	if _, _, ok := mappingOf(maps, uintptr(unsafe.Pointer(&anchor))); !ok {
		t.Fatalf("anchor %p not in an anonymous writable mapping:\n%s", &anchor, maps)
	}
}
