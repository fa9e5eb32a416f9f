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

// readBufs are the buffers LoadPackBlobs reads sealed blobs and decodes
// them into, kept for the next call. A restore or copy reads every blob
// of the data through them, two per pack read at once: in heap buffers
// (a sync.Pool, emptied by every collection, and only buffers under 4
// MiB kept) the decoded chunks faulted fresh pages all along, 34-39
// thousand page faults restoring a 1.4 GB PostgreSQL data directory.
type readBufs struct {
	once sync.Once
	pool hugemem.Pool
}

const (
	// readBufSize holds the largest chunk (8 MiB) sealed, with room to
	// spare; a larger blob (a huge directory's tree) gets heap memory.
	readBufSize = 10 << 20
	// readBufKeep: two for each pack a restore reads at once (its
	// default workers), and no more.
	readBufKeep = 16
)

func (p *readBufs) get() *hugemem.Buffer {
	p.once.Do(func() { p.pool.Keep = readBufKeep })
	return p.pool.Get(readBufSize)
}

func (p *readBufs) put(b *hugemem.Buffer) { p.pool.Put(b) }

func (p *readBufs) release() { p.pool.Close() }
