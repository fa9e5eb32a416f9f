package repository

import (
	"sync"

	"github.com/nestguard/nestguard/internal/hugemem"
)

// bigBufs recycles the large buffers named objects are sealed in. They
// come from hugemem: a WAL segment's buffer is 16 MiB, and archive-wal, a
// process per segment, would otherwise pay a page fault per 4 KiB of it
// written (14-22 µs each on the virtual machines measured: about a fifth
// of the call's page faults). Reused buffers are not cleared: sealNamed
// overwrites what it uses. Buffers under bigBufMin come from the heap.
type bigBufs struct {
	mu     sync.Mutex
	free   []*hugemem.Buffer
	closed bool
}

const (
	bigBufMin  = 1 << 20
	bigBufKeep = 4 // buffers kept for reuse (the background archiver stores 2 at once)
)

// get returns a buffer with room for n bytes (length 0) and the function
// that gives it back.
func (p *bigBufs) get(n int) ([]byte, func()) {
	if n < bigBufMin {
		return make([]byte, 0, n), func() {}
	}
	p.mu.Lock()
	var b *hugemem.Buffer
	for i, f := range p.free {
		if len(f.Bytes()) >= n {
			b = f
			p.free = append(p.free[:i], p.free[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	if b == nil {
		b = hugemem.Alloc(n)
	}
	var once sync.Once
	return b.Bytes()[:0], func() { once.Do(func() { p.put(b) }) }
}

func (p *bigBufs) put(b *hugemem.Buffer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed && len(p.free) < bigBufKeep {
		p.free = append(p.free, b)
		return
	}
	b.Free()
}

// release frees the kept buffers (Repository.Close). Buffers in use are
// freed when given back.
func (p *bigBufs) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.free {
		b.Free()
	}
	p.free, p.closed = nil, true
}
