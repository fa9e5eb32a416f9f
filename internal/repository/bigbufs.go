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
type bigBufs struct{ pool hugemem.Pool }

const bigBufMin = 1 << 20

// get returns a buffer with room for n bytes (length 0) and the function
// that gives it back.
func (p *bigBufs) get(n int) ([]byte, func()) {
	if n < bigBufMin {
		return make([]byte, 0, n), func() {}
	}
	b := p.pool.Get(n)
	var once sync.Once
	return b.Bytes()[:0:n], func() { once.Do(func() { p.pool.Put(b) }) }
}

// release frees the kept buffers (Repository.Close).
func (p *bigBufs) release() { p.pool.Close() }
