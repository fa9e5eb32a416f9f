//go:build linux

package startup

import (
	"runtime"
	"syscall"
	"testing"
	"unsafe"
)

// TestInit: after init, allocations are not sampled, and the heap's first
// mapping, where probe lies, is resident as a whole (where the kernel has
// MADV_POPULATE_WRITE; mincore reports residency).
func TestInit(t *testing.T) {
	if runtime.MemProfileRate != 0 {
		t.Errorf("MemProfileRate = %d, want 0", runtime.MemProfileRate)
	}
	base := uintptr(unsafe.Pointer(probe)) &^ (heapChunk - 1)
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, base, 4096, madvPopulateWrite); e != 0 {
		t.Skipf("no MADV_POPULATE_WRITE here: %v", e)
	}
	vec := make([]byte, heapChunk/4096)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, base, heapChunk, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatalf("mincore: %v", e)
	}
	missing := 0
	for _, v := range vec {
		if v&1 == 0 {
			missing++
		}
	}
	// The runtime may have returned some free pages since (its scavenger).
	if missing > len(vec)/4 {
		t.Errorf("%d of the heap's first %d pages are not resident", missing, len(vec))
	}
}
