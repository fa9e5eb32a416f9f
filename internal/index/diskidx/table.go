package diskidx

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// Table is an open index cache file: an index.Base. It is safe for
// concurrent use. It keeps in memory the fanout (4 bytes per 32 blobs),
// the pack table (36 bytes a pack, under 2 bytes a blob) and the names of
// its sources, and reads the records with pread: a lookup reads those of
// one fanout bucket, about 1.5 KB. The file is not mapped, so however many lookups run,
// the process's resident memory does not grow with the file: what is hot
// stays in the kernel's page cache, which is reclaimable and not the
// process's.
//
// An I/O error reading the file makes the blob look unknown (a backup
// stores it again, a restore reports it missing: never other data) and is
// kept for Err.
type Table struct {
	f      *os.File
	h      *header
	s      *sealer
	fan    []uint32 // start of each bucket's records, and the blob count
	packs  []id.ID  // in the order first seen
	byPack []uint32 // pack numbers by pack ID
	srcs   []id.ID

	recsOff, moreOff int64

	bufs sync.Pool // *[]byte for a bucket's records
	err  atomic.Pointer[error]
}

var _ index.Base = (*Table)(nil)

// Open checks the index cache at path against its checksums and key (the
// key it was written under) and opens it. An error wrapping ErrDamaged
// means the file must be rebuilt; one wrapping fs.ErrNotExist that there
// is none. Checking reads the whole file once (HMAC-SHA-256: about 1.5
// GB/s a core with SHA-NI).
func Open(path string, key []byte) (_ *Table, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("index cache: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	hb := make([]byte, headerSize)
	if _, err := io.ReadFull(f, hb); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDamaged, path, err)
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if kc := keyCheck(key); subtle.ConstantTimeCompare(kc[:], h.keyCheck[:]) != 1 {
		return nil, fmt.Errorf("%w: %s was written under another key", ErrDamaged, path)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("index cache: %w", err)
	}
	if uint64(fi.Size()) != headerSize+h.bodyLen {
		return nil, fmt.Errorf("%w: %s is %d bytes, its header says %d", ErrDamaged, path, fi.Size(), headerSize+h.bodyLen)
	}
	mac := newMAC(key)
	if _, err := io.CopyBuffer(mac, f, make([]byte, 1<<20)); err != nil {
		return nil, fmt.Errorf("index cache: reading %s: %w", path, err)
	}
	mac.Write(hb[:macFrom])
	if !hmac.Equal(mac.Sum(nil), h.mac[:]) {
		return nil, fmt.Errorf("%w: %s: MAC mismatch", ErrDamaged, path)
	}
	s, err := newSealer(key, h.salt)
	if err != nil {
		return nil, err
	}
	t := &Table{f: f, h: h, s: s}
	t.recsOff = headerSize
	t.moreOff = t.recsOff + int64(h.blobs*recordSize)
	fanOff := t.moreOff + int64(h.more*recordSize)
	// The sections after the records, decoded as read: no copy of them
	// besides the one kept.
	br := bufio.NewReaderSize(io.NewSectionReader(f, fanOff, headerSize+int64(h.bodyLen)-fanOff), 1<<20)
	var u [4]byte
	readU32 := func(dst []uint32) error {
		for i := range dst {
			if _, err := io.ReadFull(br, u[:]); err != nil {
				return err
			}
			dst[i] = binary.LittleEndian.Uint32(u[:])
		}
		return nil
	}
	readIDs := func(dst []id.ID) error {
		for i := range dst {
			if _, err := io.ReadFull(br, dst[i][:]); err != nil {
				return err
			}
		}
		return nil
	}
	t.fan = make([]uint32, 1<<h.bits+1)
	t.packs = make([]id.ID, h.packs)
	t.byPack = make([]uint32, h.packs)
	t.srcs = make([]id.ID, h.sources)
	if err := errors.Join(readU32(t.fan), readIDs(t.packs), readU32(t.byPack), readIDs(t.srcs)); err != nil {
		return nil, fmt.Errorf("index cache: reading %s: %w", path, err)
	}
	if err := t.checkFanout(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// checkFanout checks what a lookup relies on to stay in its bucket: the
// fanout ascends to the blob count. (The checksum already matched: this
// guards against a writer's bug, not the disk.)
func (t *Table) checkFanout() error {
	var prev uint32
	for _, v := range t.fan {
		if v < prev || uint64(v) > t.h.blobs {
			return fmt.Errorf("%w: fanout not ascending", ErrDamaged)
		}
		prev = v
	}
	if uint64(prev) != t.h.blobs {
		return fmt.Errorf("%w: fanout ends at %d of %d blobs", ErrDamaged, prev, t.h.blobs)
	}
	for _, n := range t.byPack {
		if uint64(n) >= t.h.packs {
			return fmt.Errorf("%w: pack number out of range", ErrDamaged)
		}
	}
	return nil
}

// Close closes the file. The Table must not be used afterwards; the
// Entries it returned are copies and stay valid.
func (t *Table) Close() error { return t.f.Close() }

// Err returns the first error reading the file since Open, or nil.
func (t *Table) Err() error {
	if p := t.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (t *Table) fail(err error) {
	err = fmt.Errorf("index cache %s: %w", t.f.Name(), err)
	t.err.CompareAndSwap(nil, &err)
}

// readAt reads len(b) bytes at off, or records the error and returns false.
func (t *Table) readAt(b []byte, off int64) bool {
	if _, err := t.f.ReadAt(b, off); err != nil {
		t.fail(err)
		return false
	}
	return true
}

// Sources returns the index objects the table was built from, sorted.
func (t *Table) Sources() []id.ID { return slices.Clone(t.srcs) }

// FileBytes is the size of the file.
func (t *Table) FileBytes() int64 { return int64(headerSize + t.h.bodyLen) }

// MemoryBytes is what the Table holds in memory: the fanout, the pack
// table and the source names.
func (t *Table) MemoryBytes() int {
	return len(t.fan)*4 + len(t.packs)*id.Size + len(t.byPack)*4 + len(t.srcs)*id.Size
}

// find returns the record of blob bid and its number, or -1.
func (t *Table) find(bid *id.ID) (int, [recordSize]byte) {
	var rec [recordSize]byte
	b := bucketOf(bid[:], t.h.bits)
	lo, hi := int(t.fan[b]), int(t.fan[b+1])
	if lo >= hi {
		return -1, rec
	}
	bp, _ := t.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer t.bufs.Put(bp)
	n := (hi - lo) * recordSize
	if cap(*bp) < n {
		*bp = make([]byte, max(n, 64*recordSize))
	}
	buf := (*bp)[:n]
	if !t.readAt(buf, t.recsOff+int64(lo)*recordSize) {
		return -1, rec
	}
	l, h := 0, hi-lo
	for l < h {
		m := int(uint(l+h) >> 1)
		switch c := bytes.Compare(buf[m*recordSize:m*recordSize+id.Size], bid[:]); {
		case c < 0:
			l = m + 1
		case c > 0:
			h = m
		default:
			copy(rec[:], buf[m*recordSize:])
			return lo + m, rec
		}
	}
	return -1, rec
}

// open returns the location of record rec, number pos (counting the
// first locations, then the others).
func (t *Table) open(rec []byte, pos uint64) loc {
	var b [locSize]byte
	copy(b[:], rec[id.Size:recordSize])
	t.s.xor(b[:], pos)
	return getLoc(b[:])
}

// entry returns the Entry of blob bid at l, or false when its pack cannot
// be read.
func (t *Table) entry(bid id.ID, l loc) (index.Entry, bool) {
	e := index.Entry{ID: bid, Type: blobType(l.pack), Offset: l.offset, Length: l.length, RawLength: l.rawLength}
	n := uint64(l.pack & packMask)
	if n >= t.h.packs {
		t.fail(fmt.Errorf("%w: pack number %d of %d", ErrDamaged, n, t.h.packs))
		return e, false
	}
	e.Pack = t.packs[n]
	return e, true
}

// Len returns the number of distinct blobs.
func (t *Table) Len() int { return int(t.h.blobs) }

// Lookup returns the first location of blob bid.
func (t *Table) Lookup(bid id.ID) (index.Entry, bool) {
	i, rec := t.find(&bid)
	if i < 0 {
		return index.Entry{}, false
	}
	return t.entry(bid, t.open(rec[:], uint64(i)))
}

// Has reports whether blob bid is known.
func (t *Table) Has(bid id.ID) bool {
	i, _ := t.find(&bid)
	return i >= 0
}

// AppendLocations appends every location of blob bid to es, the first one
// first.
func (t *Table) AppendLocations(es []index.Entry, bid id.ID) []index.Entry {
	i, rec := t.find(&bid)
	if i < 0 {
		return es
	}
	l := t.open(rec[:], uint64(i))
	e, ok := t.entry(bid, l)
	if !ok {
		return es
	}
	es = append(es, e)
	if l.pack&moreBit == 0 {
		return es
	}
	n := int(t.h.more)
	var r [recordSize]byte
	at := func(j int) bool { return t.readAt(r[:], t.moreOff+int64(j)*recordSize) }
	lo, hi := 0, n
	for lo < hi { // the first record of bid
		m := int(uint(lo+hi) >> 1)
		if !at(m) {
			return es
		}
		if bytes.Compare(r[:id.Size], bid[:]) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for j := lo; j < n && at(j) && bytes.Equal(r[:id.Size], bid[:]); j++ {
		if e, ok := t.entry(bid, t.open(r[:], t.h.blobs+uint64(j))); ok {
			es = append(es, e)
		}
	}
	return es
}

// records reads count records from off, in order.
type records struct {
	r   *bufio.Reader
	rec [recordSize]byte
	t   *Table
}

func (t *Table) records(off int64, count uint64) *records {
	return &records{r: bufio.NewReaderSize(io.NewSectionReader(t.f, off, int64(count)*recordSize), 1<<20), t: t}
}

func (r *records) next() bool {
	if _, err := io.ReadFull(r.r, r.rec[:]); err != nil {
		r.t.fail(err)
		return false
	}
	return true
}

// Each calls fn with the first location of every blob, by blob ID, until
// fn returns false, and reports whether it visited them all (not when the
// file could not be read: see Err).
func (t *Table) Each(fn func(index.Entry) bool) bool {
	rs := t.records(t.recsOff, t.h.blobs)
	for i := range t.h.blobs {
		if !rs.next() {
			return false
		}
		e, ok := t.entry(id.ID(rs.rec[:id.Size]), t.open(rs.rec[:], i))
		if !ok || !fn(e) {
			return false
		}
	}
	return true
}

// EachLocation calls fn with every location of every blob, by blob ID, a
// blob's first location first, until fn returns false, and reports
// whether it visited them all (not when the file could not be read).
func (t *Table) EachLocation(fn func(index.Entry) bool) bool {
	rs := t.records(t.recsOff, t.h.blobs)
	ms := t.records(t.moreOff, t.h.more)
	j, have := uint64(0), false // the next record of more, sorted by blob ID too
	for i := range t.h.blobs {
		if !rs.next() {
			return false
		}
		bid := id.ID(rs.rec[:id.Size])
		l := t.open(rs.rec[:], i)
		e, ok := t.entry(bid, l)
		if !ok || !fn(e) {
			return false
		}
		if l.pack&moreBit == 0 {
			continue
		}
		for {
			if !have {
				if j == t.h.more || !ms.next() {
					break
				}
				have = true
			}
			c := bytes.Compare(ms.rec[:id.Size], bid[:])
			if c > 0 {
				break
			}
			have = false
			j++
			if c < 0 {
				continue
			}
			e, ok := t.entry(bid, t.open(ms.rec[:], t.h.blobs+j-1))
			if !ok || !fn(e) {
				return false
			}
		}
	}
	return true
}

// Packs returns every distinct pack, in the order first seen.
func (t *Table) Packs() []id.ID { return slices.Clone(t.packs) }

// HasPack reports whether pack p holds a blob of the table.
func (t *Table) HasPack(p id.ID) bool {
	_, ok := slices.BinarySearchFunc(t.byPack, p, func(n uint32, p id.ID) int { return bytes.Compare(t.packs[n][:], p[:]) })
	return ok
}
