//go:build linux

package fipsinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestInitOrder: in the nestguard binary this package is initialized
// before github.com/rs/xid, whose init reads crypto/rand (and so seeds the
// FIPS entropy source) before main runs.
func TestInitOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "nestguard")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/nestguard").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := exec.Command(bin, "--help")
	c.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("nestguard --help: %v\n%s", err, out)
	}
	ours := strings.Index(string(out), "init github.com/nestguard/nestguard/internal/fipsinit ")
	xid := strings.Index(string(out), "init github.com/rs/xid ")
	if ours < 0 || xid < 0 || ours > xid {
		t.Fatalf("fipsinit at %d, rs/xid at %d in the init trace (want fipsinit first):\n%s", ours, xid, out)
	}
}
