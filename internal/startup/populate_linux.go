package startup

import (
	"syscall"
	"unsafe"
)

const (
	madvPopulateWrite = 23      // MADV_POPULATE_WRITE, Linux 5.14
	heapChunk         = 4 << 20 // the runtime maps the heap in steps of this (pallocChunkBytes)
)

// probe is a heap object whose address says where the heap is.
var probe *[64]byte

// populateHeap maps every page of the heap mapping that holds probe.
func populateHeap() {
	probe = new([64]byte)
	base := uintptr(unsafe.Pointer(probe)) &^ (heapChunk - 1)
	syscall.Syscall(syscall.SYS_MADVISE, base, heapChunk, madvPopulateWrite)
}
