package diskidx

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// Table is an open index cache file: an index.Base. It is safe for
// concurrent use. Its memory is the file's pages the kernel keeps
// mapped: a lookup touches two or three of them (the fanout, the records
// of one bucket, the pack's ID), which the kernel may drop again at will.
type Table struct {
	data    []byte // the whole file, mapped read-only
	h       *header
	s       *sealer
	recs    []byte // first locations, by blob ID
	more    []byte // other locations
	fanout  []byte
	packs   []byte
	byPack  []byte
	sources []byte
}

var _ index.Base = (*Table)(nil)

// Open checks the index cache at path against its checksums and key (the
// key it was written under) and maps it. An error wrapping ErrDamaged
// means the file must be rebuilt; one wrapping fs.ErrNotExist that there
// is none. Checking reads the whole file once (about a second a 2 GB from
// the page cache).
func Open(path string, key []byte) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("index cache: %w", err)
	}
	defer f.Close()
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
	crc := crc32.New(castagnoli)
	if _, err := io.CopyBuffer(crc, f, make([]byte, 1<<20)); err != nil {
		return nil, fmt.Errorf("index cache: reading %s: %w", path, err)
	}
	if crc.Sum32() != h.bodyCRC {
		return nil, fmt.Errorf("%w: %s: checksum mismatch", ErrDamaged, path)
	}
	s, err := newSealer(key, h.salt)
	if err != nil {
		return nil, err
	}
	data, err := mapFile(f, int(fi.Size()))
	if err != nil {
		return nil, fmt.Errorf("index cache: mapping %s: %w", path, err)
	}
	t := &Table{data: data, h: h, s: s}
	b := data[headerSize:]
	cut := func(n uint64) []byte { p := b[:n:n]; b = b[n:]; return p }
	t.recs = cut(h.blobs * recordSize)
	t.more = cut(h.more * recordSize)
	t.fanout = cut((1<<h.bits + 1) * 4)
	t.packs = cut(h.packs * id.Size)
	t.byPack = cut(h.packs * 4)
	t.sources = cut(h.sources * id.Size)
	if err := t.checkStructure(); err != nil {
		t.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// checkStructure checks what a lookup relies on to stay in bounds: the
// fanout ascends to the blob count. (The checksum already matched: this
// guards against a writer's bug, not the disk.)
func (t *Table) checkStructure() error {
	var prev uint32
	for i := range 1<<t.h.bits + 1 {
		v := t.fan(uint64(i))
		if v < prev || uint64(v) > t.h.blobs {
			return fmt.Errorf("%w: fanout not ascending", ErrDamaged)
		}
		prev = v
	}
	if uint64(prev) != t.h.blobs {
		return fmt.Errorf("%w: fanout ends at %d of %d blobs", ErrDamaged, prev, t.h.blobs)
	}
	for i := range t.h.packs {
		if uint64(binary.LittleEndian.Uint32(t.byPack[i*4:])) >= t.h.packs {
			return fmt.Errorf("%w: pack number out of range", ErrDamaged)
		}
	}
	return nil
}

// Close unmaps the file. The Table must not be used afterwards; the
// Entries it returned are copies and stay valid.
func (t *Table) Close() error {
	if t.data == nil {
		return nil
	}
	err := unmapFile(t.data)
	t.data = nil
	return err
}

// Sources returns the index objects the table was built from, sorted.
func (t *Table) Sources() []id.ID {
	out := make([]id.ID, t.h.sources)
	for i := range out {
		copy(out[i][:], t.sources[i*id.Size:])
	}
	return out
}

// FileBytes is the size of the file.
func (t *Table) FileBytes() int64 { return int64(len(t.data)) }

func (t *Table) fan(b uint64) uint32 { return binary.LittleEndian.Uint32(t.fanout[b*4:]) }

// find returns the record number of blob bid, or -1.
func (t *Table) find(bid *id.ID) int {
	b := bucketOf(bid[:], t.h.bits)
	lo, hi := int(t.fan(b)), int(t.fan(b+1))
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := bytes.Compare(t.recs[m*recordSize:m*recordSize+id.Size], bid[:]); {
		case c < 0:
			lo = m + 1
		case c > 0:
			hi = m
		default:
			return m
		}
	}
	return -1
}

// loc opens the location of record pos of recs, which starts at record
// number base (0 for recs, h.blobs for more).
func (t *Table) loc(recs []byte, i int, base uint64) loc {
	var b [locSize]byte
	copy(b[:], recs[i*recordSize+id.Size:(i+1)*recordSize])
	t.s.xor(b[:], base+uint64(i))
	return getLoc(b[:])
}

func (t *Table) entry(bid id.ID, l loc) index.Entry {
	e := index.Entry{ID: bid, Type: blobType(l.pack), Offset: l.offset, Length: l.length, RawLength: l.rawLength}
	n := uint64(l.pack & packMask)
	if n < t.h.packs {
		copy(e.Pack[:], t.packs[n*id.Size:])
	}
	return e
}

// Len returns the number of distinct blobs.
func (t *Table) Len() int { return int(t.h.blobs) }

// Lookup returns the first location of blob bid.
func (t *Table) Lookup(bid id.ID) (index.Entry, bool) {
	i := t.find(&bid)
	if i < 0 {
		return index.Entry{}, false
	}
	return t.entry(bid, t.loc(t.recs, i, 0)), true
}

// Has reports whether blob bid is known.
func (t *Table) Has(bid id.ID) bool { return t.find(&bid) >= 0 }

// AppendLocations appends every location of blob bid to es, the first one
// first.
func (t *Table) AppendLocations(es []index.Entry, bid id.ID) []index.Entry {
	i := t.find(&bid)
	if i < 0 {
		return es
	}
	l := t.loc(t.recs, i, 0)
	es = append(es, t.entry(bid, l))
	if l.pack&moreBit == 0 {
		return es
	}
	n := int(t.h.more)
	lo, hi := 0, n
	for lo < hi { // the first record of bid
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(t.more[m*recordSize:m*recordSize+id.Size], bid[:]) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for j := lo; j < n && bytes.Equal(t.more[j*recordSize:j*recordSize+id.Size], bid[:]); j++ {
		es = append(es, t.entry(bid, t.loc(t.more, j, t.h.blobs)))
	}
	return es
}

// Each calls fn with the first location of every blob, by blob ID, until
// fn returns false, and reports whether it visited them all.
func (t *Table) Each(fn func(index.Entry) bool) bool {
	for i := range int(t.h.blobs) {
		bid := id.ID(t.recs[i*recordSize : i*recordSize+id.Size])
		if !fn(t.entry(bid, t.loc(t.recs, i, 0))) {
			return false
		}
	}
	return true
}

// EachLocation calls fn with every location of every blob, by blob ID, a
// blob's first location first, until fn returns false, and reports
// whether it visited them all.
func (t *Table) EachLocation(fn func(index.Entry) bool) bool {
	j := 0 // next record of more; more is sorted by blob ID too
	for i := range int(t.h.blobs) {
		bid := id.ID(t.recs[i*recordSize : i*recordSize+id.Size])
		l := t.loc(t.recs, i, 0)
		if !fn(t.entry(bid, l)) {
			return false
		}
		if l.pack&moreBit == 0 {
			continue
		}
		for j < int(t.h.more) && bytes.Compare(t.more[j*recordSize:j*recordSize+id.Size], bid[:]) < 0 {
			j++
		}
		for ; j < int(t.h.more) && bytes.Equal(t.more[j*recordSize:j*recordSize+id.Size], bid[:]); j++ {
			if !fn(t.entry(bid, t.loc(t.more, j, t.h.blobs))) {
				return false
			}
		}
	}
	return true
}

// Packs returns every distinct pack, in the order first seen.
func (t *Table) Packs() []id.ID {
	out := make([]id.ID, t.h.packs)
	for i := range out {
		copy(out[i][:], t.packs[i*id.Size:])
	}
	return out
}

// HasPack reports whether pack p holds a blob of the table.
func (t *Table) HasPack(p id.ID) bool {
	lo, hi := 0, int(t.h.packs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		n := binary.LittleEndian.Uint32(t.byPack[m*4:])
		switch c := bytes.Compare(t.packs[int(n)*id.Size:int(n+1)*id.Size], p[:]); {
		case c < 0:
			lo = m + 1
		case c > 0:
			hi = m
		default:
			return true
		}
	}
	return false
}
