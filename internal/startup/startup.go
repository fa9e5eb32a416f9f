// Package startup is what a nestguard process does first, before the
// packages whose initialization allocates: it makes the start cheaper on
// machines where a page fault is dear.
//
// On the virtual machines measured (docs/benchmarks.md, "Start-up") the
// first touch of a 4 KiB page costs 10-22 µs, nearly all of it the trap:
// MADV_POPULATE_WRITE maps the same pages for about 0.5 µs each. A process
// touches about 1.6 MiB of heap in its first milliseconds (the packages'
// initialization, the command tree): 400 faults, a tenth of an
// archive_command call. In init this package asks the kernel to populate
// the heap's first mapping (the runtime maps the heap 4 MiB at a time), so
// that those pages are mapped when the allocator hands them out; and it
// turns the runtime's sampling of allocations off (its first sample maps
// and touches a 1.4 MiB hash table), which --mem-profile turns back on.
//
// It must be initialized early: it imports only runtime, syscall and
// unsafe, and Go initializes, among packages whose dependencies are ready,
// the first by import path, which github.com/nestguard sorts before most
// of the standard library (right after syscall, measured with
// GODEBUG=inittrace=1). Where MADV_POPULATE_WRITE is missing (Linux before
// 5.14) nothing changes: the pages fault as before.
package startup

import "runtime"

// MemProfileRate is the runtime's default sampling rate of allocations,
// for a command that wants a heap profile after all.
const MemProfileRate = 512 << 10

func init() {
	runtime.MemProfileRate = 0
	populateHeap()
}
