//go:build linux

package hugemem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePage = 2 << 20

// mapHuge maps n bytes (rounded up to whole huge pages) at an address
// aligned to a huge page, so that every 2 MiB of it can be one page, and
// advises the kernel to use huge pages there.
func mapHuge(n int) ([]byte, func(), bool) {
	if n <= 0 {
		return nil, nil, false
	}
	size := uintptr(n+hugePage-1) &^ (hugePage - 1)
	p, err := unix.MmapPtr(-1, 0, nil, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, false
	}
	// Keep an aligned window: the head before the first boundary and the
	// tail after size are unmapped again.
	base := uintptr(p)
	skip := (base+hugePage-1)&^(hugePage-1) - base
	if skip > 0 {
		unix.MunmapPtr(p, skip)
	}
	if tail := hugePage - skip; tail > 0 {
		unix.MunmapPtr(unsafe.Add(p, skip+size), tail)
	}
	start := unsafe.Add(p, skip)
	b := unsafe.Slice((*byte)(start), size)
	// Without huge pages (a kernel that refuses, THP "never") the buffer
	// still works, with 4 KiB pages.
	unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b[:n:n], func() { unix.MunmapPtr(start, size) }, true
}

// advise asks for huge pages on the whole 2 MiB-aligned pages inside b,
// and returns the function that asks for small pages there again.
func advise(b []byte) func() {
	p := unsafe.Pointer(unsafe.SliceData(b))
	base := uintptr(p)
	lo := (base + hugePage - 1) &^ (hugePage - 1)
	hi := (base + uintptr(len(b))) &^ (hugePage - 1)
	if lo >= hi {
		return func() {}
	}
	unix.Madvise(b[lo-base:hi-base], unix.MADV_HUGEPAGE)
	// The undo keeps the range's address, not b: the memory may be
	// freed by then (it stays mapped: the Go heap is never unmapped).
	return func() { unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, unix.MADV_NOHUGEPAGE) }
}
