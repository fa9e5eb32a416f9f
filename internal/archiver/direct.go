package archiver

import (
	"io"
	"os"
	"sync"

	"github.com/nestguard/nestguard/internal/directio"
	"github.com/nestguard/nestguard/internal/hugemem"
)

// Large files are read past the page cache (package directio), a block
// ahead of the chunker: the backup of one 10 GiB file spent 40% of its
// CPU in read(2) before.
//
// Blocks already in the page cache (a file just written, a database's
// hot segment) are read through it, as before: a direct read would fetch
// them from the disk again, and flush dirty ones first.
const (
	// directMin is the smallest file read this way: below it the set-up
	// (a second descriptor, a goroutine, 8 MiB of buffers) is not repaid.
	directMin = 64 << 20
	// directBlock is a read; two are in use per file, one being chunked
	// while the next is read. 4 MiB reads keep the disk's queue busy
	// (1 MiB direct reads ran at 70% of the rate of 4 MiB ones).
	directBlock = 4 << 20
)

// directReader reads a file from its start, a block ahead of its caller:
// each block with O_DIRECT unless it is in the page cache. It is an
// io.Reader for one goroutine; Close stops the reading ahead.
type directReader struct {
	blocks chan dblock          // read ahead, in order
	free   chan *hugemem.Buffer // buffers to read into
	stop   chan struct{}
	done   chan struct{}
	cur    dblock
	pos    int
	waited bool // the current block was not read yet when next asked

	pool *hugemem.Pool
	size int64 // when opened

	// Counts for tests: blocks read direct and through the page cache.
	direct, cached int
	statsMu        sync.Mutex
}

type dblock struct {
	buf  *hugemem.Buffer // the whole buffer, returned to free
	data []byte          // what was read into it
	err  error           // after data: io.EOF at the end
}

// newDirectReader returns a reader of f's content (f is open at offset 0,
// size is its size), or nil when f should be read as before: a small file,
// or a file system that does not take direct reads. path must name f: it
// is opened again with O_DIRECT, and not used if it names another file by
// then. pool recycles the buffers: mapped outside the Go heap
// (page-aligned, as O_DIRECT wants), since the heap's soft limit
// (cmd/nestguard) is sized for the backup's own buffers, and eight readers
// of large files would hold 64 MiB more, which would keep the collector
// running. The archiver releases them once every reader is closed.
func newDirectReader(f *os.File, path string, size, minSize int64, pool *hugemem.Pool) *directReader {
	if size < minSize {
		return nil
	}
	df, err := directio.OpenSame(f, path)
	if err != nil {
		return nil
	}
	r := &directReader{
		blocks: make(chan dblock, 1),
		free:   make(chan *hugemem.Buffer, 2),
		size:   size,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		pool:   pool,
	}
	for range cap(r.free) {
		b, ok := pool.GetMapped(directBlock)
		if !ok {
			for range len(r.free) {
				pool.Put(<-r.free)
			}
			df.Close()
			return nil
		}
		r.free <- b
	}
	go r.readAhead(f, df)
	return r
}

// readAhead reads the file block by block into free buffers and sends
// them on blocks, until the end, an error or Close. df is closed when it
// ends; f is the caller's.
func (r *directReader) readAhead(f, df *os.File) {
	defer close(r.done)
	rd := directio.NewReader(f, df)
	defer rd.Close()
	var off int64
	for {
		var bp *hugemem.Buffer
		select {
		case bp = <-r.free:
		case <-r.stop:
			return
		}
		buf := bp.Bytes()
		var n int
		var err error
		if rd.Direct() && !directio.Resident(f, off, min(int64(directBlock), r.size-off)) {
			n, err = rd.ReadBlock(buf, off)
			r.count(rd.Direct())
		} else {
			n, err = directio.ReadCached(f, buf, off)
			r.count(false)
		}
		off += int64(n)
		if err == nil && n == 0 {
			err = io.EOF
		}
		select {
		case r.blocks <- dblock{buf: bp, data: buf[:n], err: err}:
		case <-r.stop:
			r.pool.Put(bp)
			return
		}
		if err != nil {
			return
		}
	}
}

func (r *directReader) count(direct bool) {
	r.statsMu.Lock()
	if direct {
		r.direct++
	} else {
		r.cached++
	}
	r.statsMu.Unlock()
}

func (r *directReader) Read(p []byte) (int, error) {
	if err := r.next(); err != nil {
		return 0, err
	}
	n := copy(p, r.cur.data[r.pos:])
	r.pos += n
	return n, nil
}

// ReadBlock implements chunker.BlockReader: the rest of the current block,
// which stays in its buffer until the next call.
func (r *directReader) ReadBlock() ([]byte, error) {
	if err := r.next(); err != nil {
		return nil, err
	}
	b := r.cur.data[r.pos:]
	r.pos = len(r.cur.data)
	return b, nil
}

// next makes sure the current block has bytes left, taking the next one
// (and freeing the one used up) if not, or returns the error that ended
// the reading.
func (r *directReader) next() error {
	for r.pos == len(r.cur.data) {
		if r.cur.err != nil {
			return r.cur.err
		}
		if r.cur.buf != nil {
			r.free <- r.cur.buf
			r.cur.buf = nil
		}
		select {
		case r.cur = <-r.blocks:
			r.waited = false
		default:
			r.cur = <-r.blocks
			r.waited = true
		}
		r.pos = 0
	}
	return nil
}

// Waited reports whether the block being read had not been read from the
// file yet when the caller asked for it: the caller waits for the disk.
func (r *directReader) Waited() bool { return r.waited }

// Close stops reading ahead and keeps the buffers for the next file.
func (r *directReader) Close() {
	close(r.stop)
	<-r.done
	if r.cur.buf != nil {
		r.pool.Put(r.cur.buf)
		r.cur = dblock{}
	}
	for {
		select {
		case b := <-r.free:
			r.pool.Put(b)
		case b := <-r.blocks:
			r.pool.Put(b.buf)
		default:
			return
		}
	}
}
