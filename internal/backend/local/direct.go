package local

import (
	"io"
	"os"

	"github.com/nestguard/nestguard/internal/directio"
	"github.com/nestguard/nestguard/internal/hugemem"
)

// Ranges of directMin bytes or more that are not in the page cache are
// read past it (package directio), in blocks of up to directBlock into
// buffers the backend keeps. A restore reads each pack once: through the
// page cache, the kernel's copy out of fresh pages was half of the CPU
// time of restoring one 10 GiB file (docs/benchmarks.md). verify
// --read-data, copy and prune's repack read packs the same way.
//
// Blocks of 1 MiB restored that file as fast as blocks of 4 MiB (a
// restore reads eight ranges at once, which keeps the disk busy), and a
// restore's peak RSS grew by 8-18 MiB instead of 34 (each buffer is in
// huge pages: 2 MiB resident).
const (
	directMin   = 1 << 20
	directBlock = 1 << 20
	// directKeep bounds the buffers kept between reads: a restore reads
	// restorer.DefaultWorkers ranges at once.
	directKeep = 8
	// writeBlock is a direct write of a streamed pack (stream.go). With
	// the disk reading the file backed up at the same time, 4 MiB writes
	// made the backup of a 4 GiB file 3-5% faster than 1 MiB ones (three
	// alternating pairs), for 5-12 MiB more peak RSS.
	writeBlock = 4 << 20
)

// openDirectRange returns a reader of the want bytes at off of f (opened
// at path) that reads them past the page cache, or nil when they should
// be read through it: a short range, one in the page cache, a file system
// without direct reads, no mapped memory. The reader owns f from then on.
func (b *Backend) openDirectRange(f *os.File, path string, off, want int64) *directRange {
	if want < directMin || directio.Resident(f, off, want) {
		return nil
	}
	df, err := directio.OpenSame(f, path) // else read what f has open
	if err != nil {
		return nil
	}
	buf, ok := b.direct.GetMapped(directBlock)
	if !ok {
		df.Close()
		return nil
	}
	b.directRanges.Add(1)
	return &directRange{f: f, rd: directio.NewReader(f, df), buf: buf, pool: &b.direct,
		start: off, next: off &^ (directio.Align - 1), end: off + want}
}

// directRange reads [start, end) of a file block by block, aligned
// (directio.Reader: past the page cache while that works). It reads no
// further than the end of the file: fewer bytes are then an io.EOF, which
// the backend's exact reader turns into io.ErrUnexpectedEOF.
type directRange struct {
	f          *os.File // the file, read through rd
	rd         *directio.Reader
	buf        *hugemem.Buffer
	pool       *hugemem.Pool
	start, end int64
	next       int64  // the file offset of the next block
	data       []byte // what is left of the current block
	err        error  // after data
}

func (r *directRange) Read(p []byte) (int, error) {
	for len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.fill()
	}
	n := hugemem.CopyCached(p, r.data) // opened and hashed next
	r.data = r.data[n:]
	return n, nil
}

// fill reads the next block into r.data, or sets r.err.
func (r *directRange) fill() {
	if r.next >= r.end {
		r.err = io.EOF
		return
	}
	buf := r.buf.Bytes()
	at := r.next
	// Up to the aligned end, as direct reads want; bytes past r.end are
	// not delivered.
	n, err := r.rd.ReadBlock(buf[:min(int64(len(buf)), directio.AlignUp(r.end)-at)], at)
	r.next += int64(n)
	// The block may begin before the range (alignment) and end after it.
	lo, hi := max(r.start-at, 0), min(r.end-at, int64(n))
	if lo < hi {
		r.data = buf[lo:hi]
	}
	switch {
	case err != nil:
		r.err = err
	case n == 0:
		r.err = io.EOF
	}
}

// Close gives the buffer back and closes both descriptors.
func (r *directRange) Close() error {
	if r.buf != nil {
		r.pool.Put(r.buf)
		r.buf = nil
	}
	r.rd.Close()
	return r.f.Close()
}
