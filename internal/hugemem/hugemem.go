// Package hugemem allocates large byte buffers outside the Go heap, backed
// by transparent huge pages where the kernel allows it.
//
// A fresh 4 KiB page costs a page fault when first written. On the virtual
// machines nestguard was measured on, that fault cost 14-22 µs: writing
// 16 MiB of fresh memory took 57 ms, against 0.8 ms with 2 MiB pages (Linux
// in its default "madvise" mode gives them only to memory that asks). A
// process that archives one WAL segment and exits pays that on every
// call, so the buffers of such paths come from here.
//
// The memory is zeroed, holds no Go pointers (the collector does not scan
// it) and is not counted by the heap's soft limit; Free returns it to the
// system, and it must not be used after.
package hugemem

import "sync"

// Buffer is memory of at least the size asked for (Bytes has that length
// and possibly more capacity).
type Buffer struct {
	b    []byte
	free func()
}

// Bytes returns the buffer's memory.
func (b *Buffer) Bytes() []byte { return b.b }

// Mapped reports whether the memory is mapped (page-aligned, as O_DIRECT
// wants) rather than from the Go heap.
func (b *Buffer) Mapped() bool { return b.free != nil }

// Free gives the memory back. Calling it again does nothing.
func (b *Buffer) Free() {
	if b.free != nil {
		b.free()
		b.free = nil
	}
	b.b = nil
}

// Map returns a zeroed buffer of n bytes mapped for huge pages, or false
// where mappings are not available (then Alloc would use the heap).
func Map(n int) (*Buffer, bool) {
	if b, free, ok := mapHuge(n); ok {
		return &Buffer{b: b, free: free}, true
	}
	return nil, false
}

// Advise asks the kernel for huge pages on the memory of b not yet
// touched (its whole 2 MiB pages), wherever it lives: a heap buffer about
// to be filled for the first time then takes a fault per 2 MiB instead of
// one per 4 KiB. It changes neither b's contents nor its lifetime. undo
// asks for small pages there again, and may be called once b is freed: a
// heap range left advised would later fault in 2 MiB for every small
// object put there, and the process's RSS grow by as much.
func Advise(b []byte) (undo func()) { return advise(b) }

// Heap returns a buffer of n bytes from the Go heap: for callers that take
// a Buffer whatever its size, where a small one is not worth a mapping.
func Heap(n int) *Buffer { return &Buffer{b: make([]byte, n)} }

// Alloc returns a zeroed buffer of n bytes: mapped and advised for huge
// pages where possible, else from the Go heap.
func Alloc(n int) *Buffer {
	if b, ok := Map(n); ok {
		return b
	}
	return Heap(n)
}

// Pool keeps buffers given back (Put) for later Gets, so that a process
// that handles many large inputs (the background WAL archiver) neither
// faults nor zeroes their memory again: the kernel clears every fresh huge
// page it hands out, 5-6 ms of CPU time per 16 MiB measured here. A
// reused buffer is not cleared. The zero Pool keeps DefaultKeep buffers;
// it is safe for concurrent use.
type Pool struct {
	// Keep bounds the buffers kept (0: DefaultKeep); more are freed.
	Keep   int
	mu     sync.Mutex
	free   []*Buffer
	closed bool
}

// DefaultKeep is the number of buffers a Pool keeps by default.
const DefaultKeep = 4

// Get returns a buffer of at least n bytes, reused or allocated (Alloc).
// Its contents are undefined.
func (p *Pool) Get(n int) *Buffer {
	if b := p.take(n, false); b != nil {
		return b
	}
	return Alloc(n)
}

// GetMapped is Get for a caller that needs mapped memory (page-aligned,
// as O_DIRECT wants): false where mapping is not available.
func (p *Pool) GetMapped(n int) (*Buffer, bool) {
	if b := p.take(n, true); b != nil {
		return b, true
	}
	return Map(n)
}

// take removes and returns a kept buffer of at least n bytes (mapped, if
// asked), or nil.
func (p *Pool) take(n int, mapped bool) *Buffer {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range p.free {
		if len(b.b) >= n && (!mapped || b.free != nil) {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return b
		}
	}
	return nil
}

// Len is the number of buffers kept.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// Put gives b back for reuse, or frees it when the pool is full or
// closed. b must not be used after.
func (p *Pool) Put(b *Buffer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := p.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	if !p.closed && len(p.free) < keep {
		p.free = append(p.free, b)
		return
	}
	b.Free()
}

// Release frees the buffers kept; the pool goes on keeping those given
// back later.
func (p *Pool) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.release()
}

// Close frees the buffers kept; buffers given back later are freed.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.release()
	p.closed = true
}

func (p *Pool) release() {
	for _, b := range p.free {
		b.Free()
	}
	p.free = nil
}
