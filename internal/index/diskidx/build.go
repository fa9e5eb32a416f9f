package diskidx

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"slices"

	"github.com/nestguard/nestguard/internal/atomicfile"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// Builder writes an index cache file from entries given in any order. It
// spills them to 2^8 part files by the top byte of the blob ID and sorts
// one part at a time, so that building the index of 10^8 blobs needs about
// 20 MB for a part and the table of distinct packs (about 48 bytes a pack)
// in memory, and 4.8 GB of temporary disk. It is not safe for concurrent
// use.
type Builder struct {
	dir   string // holds the part files
	parts [1 << partBits]*part
	packs packNumbers
	n     uint64
	err   error
}

type part struct {
	f *os.File
	w *bufio.Writer
}

// NewBuilder returns a Builder whose part files go in a new directory
// under dir (on the file system where the result will be renamed to, so
// that the disk it needs is where the cache is). Call Finish or Abort.
func NewBuilder(dir string) (*Builder, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("index cache: %w", err)
	}
	d, err := os.MkdirTemp(dir, ".build-*")
	if err != nil {
		return nil, fmt.Errorf("index cache: %w", err)
	}
	return &Builder{dir: d}, nil
}

// Add adds one location of a blob. The first location added for a blob is
// the one Lookup returns; a location in a pack already given for the blob
// is dropped, as index.Map.Add does.
func (b *Builder) Add(e index.Entry) error {
	if b.err != nil {
		return b.err
	}
	if b.n == 1<<32-1 {
		b.err = errors.New("index cache: more than 2^32-1 locations")
		return b.err
	}
	pn, err := b.packs.intern(e.Pack)
	if err != nil {
		b.err = err
		return err
	}
	if e.Type != index.DataBlob {
		pn |= treeBit
	}
	p := b.parts[e.ID[0]]
	if p == nil {
		f, err := os.Create(filepath.Join(b.dir, fmt.Sprintf("%02x", e.ID[0])))
		if err != nil {
			b.err = fmt.Errorf("index cache: %w", err)
			return b.err
		}
		p = &part{f: f, w: bufio.NewWriterSize(f, 32<<10)}
		b.parts[e.ID[0]] = p
	}
	var rec [recordSize]byte
	copy(rec[:], e.ID[:])
	loc{pn, e.Offset, e.Length, e.RawLength}.put(rec[id.Size:])
	if _, err := p.w.Write(rec[:]); err != nil {
		b.err = fmt.Errorf("index cache: %w", err)
		return b.err
	}
	b.n++
	return nil
}

// Abort removes the Builder's temporary files.
func (b *Builder) Abort() {
	for _, p := range b.parts {
		if p != nil {
			p.f.Close()
		}
	}
	os.RemoveAll(b.dir)
}

// counter is the writer of the body: it counts what it writes.
type counter struct {
	w io.Writer
	n uint64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// bucketWriter writes the buckets: their records, sealed, each bucket's
// followed by its tag, and counts the records of each.
type bucketWriter struct {
	w      *bufio.Writer
	s      *sealer
	mac    *bucketMAC
	bits   uint32
	counts []uint32 // records of each bucket
	b      uint64   // the bucket being written
	recs   []byte   // its records, sealed
	pos    uint64   // the number of the next record in the file
}

// add appends a record (blob ID, plaintext location) to its bucket,
// closing the buckets before it.
func (bw *bucketWriter) add(rec []byte) error {
	b := bucketOf(rec, bw.bits)
	for bw.b < b {
		if err := bw.close(); err != nil {
			return err
		}
	}
	n := len(bw.recs)
	bw.recs = append(bw.recs, rec[:recordSize]...)
	bw.s.xor(bw.recs[n+id.Size:], bw.pos)
	bw.pos++
	bw.counts[b]++
	return nil
}

// close writes the current bucket and its tag and goes to the next.
func (bw *bucketWriter) close() error {
	bw.w.Write(bw.recs)
	if _, err := bw.w.Write(bw.mac.tag(bw.b, bw.recs)); err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	bw.recs = bw.recs[:0]
	bw.b++
	return nil
}

// Finish writes the index cache to path (a temporary file, synced, then
// renamed over path, mode 0600), with the locations sealed under key (32
// bytes) and sources as the index objects it was built from, and removes
// the temporary files. The Builder cannot be used afterwards.
func (b *Builder) Finish(path string, key []byte, sources []id.ID) (err error) {
	defer b.Abort()
	if b.err != nil {
		return b.err
	}
	h := header{bits: fanoutBits(b.n), keyCheck: keyCheck(key)}
	if _, err := rand.Read(h.salt[:]); err != nil {
		return err
	}
	s, err := newSealer(key, h.salt)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".index-*.tmp")
	if err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	if _, err := f.Seek(headerSize, io.SeekStart); err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	cw := &counter{w: f}
	w := bufio.NewWriterSize(cw, 1<<20)
	bw := &bucketWriter{w: w, s: s, mac: newBucketMAC(bucketKey(key, h.salt)), bits: h.bits, counts: make([]uint32, 1<<h.bits)}
	var buf []byte
	for i, p := range b.parts {
		if p == nil {
			continue
		}
		if buf, err = p.load(buf); err != nil {
			return fmt.Errorf("index cache: part %02x: %w", i, err)
		}
		if err := b.writePart(bw, &h, buf); err != nil {
			return err
		}
		p.f.Close()
		os.Remove(p.f.Name())
		b.parts[i] = nil
	}
	buf = nil
	for bw.b < 1<<h.bits {
		if err := bw.close(); err != nil {
			return err
		}
	}
	// The sections after the buckets, under the header's MAC.
	mac := newMAC(key)
	tw := io.MultiWriter(w, mac)
	var start uint32
	var u [4]byte
	for _, c := range bw.counts {
		binary.LittleEndian.PutUint32(u[:], start)
		tw.Write(u[:])
		start += c
	}
	binary.LittleEndian.PutUint32(u[:], start)
	tw.Write(u[:])
	h.packs = uint64(len(b.packs.ids))
	for _, p := range b.packs.ids {
		tw.Write(p[:])
	}
	order := make([]uint32, len(b.packs.ids))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(x, y uint32) int { return bytes.Compare(b.packs.ids[x][:], b.packs.ids[y][:]) })
	for _, n := range order {
		binary.LittleEndian.PutUint32(u[:], n)
		tw.Write(u[:])
	}
	srcs := slices.Clone(sources)
	slices.SortFunc(srcs, func(x, y id.ID) int { return bytes.Compare(x[:], y[:]) })
	srcs = slices.Compact(srcs)
	h.sources = uint64(len(srcs))
	for _, src := range srcs {
		tw.Write(src[:])
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	h.bodyLen = cw.n
	if h.bodyLen != h.wantBodyLen() || uint64(start) != h.records() {
		return fmt.Errorf("index cache: wrote %d bytes of body, want %d", h.bodyLen, h.wantBodyLen())
	}
	mac.Write(h.encode()[:macFrom])
	copy(h.mac[:], mac.Sum(nil))
	if _, err := f.WriteAt(h.encode(), 0); err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// load returns the part's records, reusing buf.
func (p *part) load(buf []byte) ([]byte, error) {
	if err := p.w.Flush(); err != nil {
		return nil, err
	}
	fi, err := p.f.Stat()
	if err != nil {
		return nil, err
	}
	if cap(buf) < int(fi.Size()) {
		buf = make([]byte, fi.Size())
	}
	buf = buf[:fi.Size()]
	if _, err := p.f.ReadAt(buf, 0); err != nil {
		return nil, err
	}
	return buf, nil
}

// writePart sorts the records of one part by blob ID, keeping the order
// added among a blob's locations, and writes every location of each blob,
// its first one first, dropping a location in a pack already given.
func (b *Builder) writePart(bw *bucketWriter, h *header, recs []byte) error {
	n := len(recs) / recordSize
	// Sort record numbers (4 bytes moved per swap, not 48); the stable
	// sort keeps the order added among equal IDs.
	order := make([]uint32, n)
	for i := range order {
		order[i] = uint32(i)
	}
	rec := func(i uint32) []byte { return recs[int(i)*recordSize : int(i+1)*recordSize] }
	slices.SortStableFunc(order, func(x, y uint32) int { return bytes.Compare(rec(x)[:id.Size], rec(y)[:id.Size]) })
	var out [recordSize]byte
	var others []uint32 // records of the blob's other locations
	for k := 0; k < n; {
		first := rec(order[k])
		fl := getLoc(first[id.Size:])
		seen := []uint32{fl.pack & packMask}
		others = others[:0]
		j := k + 1
		for ; j < n && bytes.Equal(rec(order[j])[:id.Size], first[:id.Size]); j++ {
			pn := getLoc(rec(order[j])[id.Size:]).pack & packMask
			if slices.Contains(seen, pn) {
				continue
			}
			seen = append(seen, pn)
			others = append(others, order[j])
		}
		if len(others) > 0 {
			fl.pack |= moreBit
		}
		copy(out[:], first[:id.Size])
		fl.put(out[id.Size:])
		if err := bw.add(out[:]); err != nil {
			return err
		}
		for _, o := range others {
			if err := bw.add(rec(o)); err != nil {
				return err
			}
		}
		h.blobs++
		h.more += uint64(len(others))
		k = j
	}
	return nil
}

// fanoutBits chooses the fanout for n blobs: about bucketTarget a bucket.
func fanoutBits(n uint64) uint32 {
	b := uint32(bits.Len64(n / bucketTarget))
	return min(max(b, minFanoutBits), maxFanoutBits)
}

// packNumbers numbers the distinct packs, as index.Map's pack table does,
// in an open-addressing table of uint32 (8 to 16 bytes a pack) besides
// the IDs.
type packNumbers struct {
	ids   []id.ID
	table []uint32 // 1 + index into ids; 0 = empty
}

func (t *packNumbers) intern(p id.ID) (uint32, error) {
	if len(t.table) > 0 {
		mask := uint64(len(t.table) - 1)
		for h := binary.LittleEndian.Uint64(p[:8]) & mask; ; h = (h + 1) & mask {
			v := t.table[h]
			if v == 0 {
				break
			}
			if t.ids[v-1] == p {
				return v - 1, nil
			}
		}
	}
	if len(t.ids) > packMask {
		return 0, errors.New("index cache: more than 2^30 packs")
	}
	n := uint32(len(t.ids))
	t.ids = append(t.ids, p)
	if 2*len(t.ids) > len(t.table) {
		t.table = make([]uint32, max(64, 2*len(t.table)))
		for i := range t.ids {
			t.insert(uint32(i))
		}
	} else {
		t.insert(n)
	}
	return n, nil
}

func (t *packNumbers) insert(n uint32) {
	mask := uint64(len(t.table) - 1)
	h := binary.LittleEndian.Uint64(t.ids[n][:8]) & mask
	for t.table[h] != 0 {
		h = (h + 1) & mask
	}
	t.table[h] = n + 1
}
