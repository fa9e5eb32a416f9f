package diskidx

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
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

// countingMAC is the writer of the body: it counts and MACs what it
// writes.
type countingMAC struct {
	w   io.Writer
	mac hash.Hash
	n   uint64
}

func (c *countingMAC) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.mac.Write(p[:n])
	c.n += uint64(n)
	return n, err
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
	cw := &countingMAC{w: f, mac: newMAC(key)}
	w := bufio.NewWriterSize(cw, 1<<20)
	counts := make([]uint32, 1<<h.bits)
	var more []byte // records of the other locations, unsealed
	var buf []byte
	for i, p := range b.parts {
		if p == nil {
			continue
		}
		if buf, err = p.load(buf); err != nil {
			return fmt.Errorf("index cache: part %02x: %w", i, err)
		}
		more, err = b.writePart(w, s, &h, counts, buf, more)
		if err != nil {
			return err
		}
		p.f.Close()
		os.Remove(p.f.Name())
		b.parts[i] = nil
	}
	buf = nil
	h.more = uint64(len(more) / recordSize)
	for j := range h.more {
		r := more[j*recordSize : (j+1)*recordSize]
		s.xor(r[id.Size:], h.blobs+j)
		w.Write(r)
	}
	var start uint32
	var u [4]byte
	for _, c := range counts {
		binary.LittleEndian.PutUint32(u[:], start)
		w.Write(u[:])
		start += c
	}
	binary.LittleEndian.PutUint32(u[:], start)
	w.Write(u[:])
	h.packs = uint64(len(b.packs.ids))
	for _, p := range b.packs.ids {
		w.Write(p[:])
	}
	order := make([]uint32, len(b.packs.ids))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(x, y uint32) int { return bytes.Compare(b.packs.ids[x][:], b.packs.ids[y][:]) })
	for _, n := range order {
		binary.LittleEndian.PutUint32(u[:], n)
		w.Write(u[:])
	}
	srcs := slices.Clone(sources)
	slices.SortFunc(srcs, func(x, y id.ID) int { return bytes.Compare(x[:], y[:]) })
	srcs = slices.Compact(srcs)
	h.sources = uint64(len(srcs))
	for _, src := range srcs {
		w.Write(src[:])
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	h.bodyLen = cw.n
	if h.bodyLen != h.wantBodyLen() {
		return fmt.Errorf("index cache: wrote %d bytes of body, want %d", h.bodyLen, h.wantBodyLen())
	}
	cw.mac.Write(h.encode()[:macFrom])
	copy(h.mac[:], cw.mac.Sum(nil))
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
// added among a blob's locations, writes the first location of each blob
// and returns more with the others appended.
func (b *Builder) writePart(w *bufio.Writer, s *sealer, h *header, counts []uint32, recs []byte, more []byte) ([]byte, error) {
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
	for k := 0; k < n; {
		first := rec(order[k])
		fl := getLoc(first[id.Size:])
		seen := []uint32{fl.pack & packMask}
		j := k + 1
		for ; j < n && bytes.Equal(rec(order[j])[:id.Size], first[:id.Size]); j++ {
			r := rec(order[j])
			pn := getLoc(r[id.Size:]).pack & packMask
			if slices.Contains(seen, pn) {
				continue
			}
			seen = append(seen, pn)
			more = append(more, r...)
		}
		if len(seen) > 1 {
			fl.pack |= moreBit
		}
		copy(out[:], first[:id.Size])
		fl.put(out[id.Size:])
		s.xor(out[id.Size:], h.blobs)
		if _, err := w.Write(out[:]); err != nil {
			return nil, fmt.Errorf("index cache: %w", err)
		}
		counts[bucketOf(first, h.bits)]++
		h.blobs++
		k = j
	}
	return more, nil
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
