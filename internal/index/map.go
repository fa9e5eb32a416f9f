package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/nestguard/nestguard/internal/id"
)

// Map is the in-memory index of every blob: blob ID to its locations. It is
// safe for concurrent use.
//
// A repository of 100 TB in 1 MiB chunks has 1e8 blobs, so the Map is built
// to cost under 64 bytes a blob (a Go map of Entry costs over 100): one
// 52-byte slot per blob in a paged array, chained hash buckets of 4 bytes
// indexed by the blob ID's first bytes (IDs are keyed hashes, so uniform),
// and a pack table that replaces each 32-byte pack ID by a 4-byte number.
//
// A blob stored in several packs (by concurrent backups, or after a crash
// or a repair) has its first location in its slot and the others in a side
// map: such blobs are rare, so the common blob pays nothing for them.
//
// A Map made by NewMapOver answers from a read-only Base first (the blobs
// of a large repository, in a file) and keeps in memory only
// what is added to it: a location Add gives for a blob of the Base in a
// pack the Base does not list for it is one more location of that blob,
// after the Base's.
type Map struct {
	mu       sync.RWMutex
	base     Base   // nil: none
	shadowed uint32 // slots of blobs the base holds too (more locations of them)
	slots    slotArray
	buckets  []uint32 // 1 + index of a chain's first slot, 0 = empty; power-of-two length
	packs    packTable
	more     map[uint32][]location // slot index -> its locations after the first
}

// location is one more place of a blob that sits in several packs.
type location struct {
	pack      uint32 // index into the pack table; treeBit marks a tree blob
	offset    uint32
	length    uint32
	rawLength uint32
}

const minBuckets = 64

// NewMap returns an empty Map.
func NewMap() *Map {
	return &Map{buckets: make([]uint32, minBuckets)}
}

// NewMapOver returns a Map whose blobs are those of base, to which Add
// adds in memory.
func NewMapOver(base Base) *Map {
	m := NewMap()
	m.base = base
	return m
}

func bucketOf(bid *id.ID, n int) uint64 {
	return binary.LittleEndian.Uint64(bid[:8]) & uint64(n-1)
}

// Add records that blob e.ID is at e's location. A blob may sit in
// several packs (concurrent backups stored it twice); each location is
// kept, the first one added is the one Lookup returns, and a location
// already known (the same pack listed by two index objects) is not added
// again.
//
// Only DataBlob and TreeBlob can be stored; any other type is recorded as
// TreeBlob, so callers must check the types of untrusted input (Decode does).
// A Map holds at most 2^32-1 blobs in 2^30 packs, far beyond what memory
// allows (2^32 blobs take over 200 GiB); Add panics past that.
func (m *Map) Add(e Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	inBase := false
	if m.base != nil {
		var buf [4]Entry
		ls := m.base.AppendLocations(buf[:0], e.ID)
		for _, l := range ls {
			if l.Pack == e.Pack {
				return
			}
		}
		inBase = len(ls) > 0
	}
	p := m.packs.intern(e.Pack)
	if e.Type != DataBlob {
		p |= treeBit
	}
	if i, s := m.find(&e.ID); s != nil {
		m.addLocation(i, s, location{pack: p, offset: e.Offset, length: e.Length, rawLength: e.RawLength})
		return
	}
	if m.slots.n == maxSlots {
		panic("index: more than 2^32-1 blobs")
	}
	// Keep chains at two slots on average.
	if int(m.slots.n) >= 2*len(m.buckets) {
		m.rehash(2 * len(m.buckets))
	}
	if inBase {
		m.shadowed++
	}
	i, s := m.slots.push()
	*s = slot{id: e.ID, pack: p, offset: e.Offset, length: e.Length, rawLength: e.RawLength}
	b := bucketOf(&e.ID, len(m.buckets))
	s.next = m.buckets[b]
	m.buckets[b] = i + 1
}

// addLocation records l as one more location of the blob in slot i, s,
// unless the blob is already known in l's pack. The caller holds m.mu.
func (m *Map) addLocation(i uint32, s *slot, l location) {
	if s.pack&packMask == l.pack&packMask {
		return
	}
	for _, o := range m.more[i] {
		if o.pack&packMask == l.pack&packMask {
			return
		}
	}
	if m.more == nil {
		m.more = make(map[uint32][]location)
	}
	m.more[i] = append(m.more[i], l)
	s.pack |= moreBit
}

// rehash rebuilds the chains for n buckets. Slots stay where they are: only
// their links and the bucket array change.
func (m *Map) rehash(n int) {
	buckets := make([]uint32, n)
	for i := range m.slots.n {
		s := m.slots.at(i)
		b := bucketOf(&s.id, n)
		s.next = buckets[b]
		buckets[b] = i + 1
	}
	m.buckets = buckets
}

// find returns the index and slot of bid, or nil. The caller holds m.mu.
func (m *Map) find(bid *id.ID) (uint32, *slot) {
	for i := m.buckets[bucketOf(bid, len(m.buckets))]; i != 0; {
		s := m.slots.at(i - 1)
		if s.id == *bid {
			return i - 1, s
		}
		i = s.next
	}
	return 0, nil
}

func (m *Map) entry(bid id.ID, l location) Entry {
	t := DataBlob
	if l.pack&treeBit != 0 {
		t = TreeBlob
	}
	return Entry{
		ID:        bid,
		Type:      t,
		Pack:      m.packs.ids[l.pack&packMask],
		Offset:    l.offset,
		Length:    l.length,
		RawLength: l.rawLength,
	}
}

// first returns the entry of the location in slot s.
func (m *Map) first(s *slot) Entry {
	return m.entry(s.id, location{pack: s.pack, offset: s.offset, length: s.length, rawLength: s.rawLength})
}

// Lookup returns the location of blob bid: the first one added, when it
// sits in several packs (see Locations).
func (m *Map) Lookup(bid id.ID) (Entry, bool) {
	if m.base != nil {
		if e, ok := m.base.Lookup(bid); ok {
			return e, true
		}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, s := m.find(&bid)
	if s == nil {
		return Entry{}, false
	}
	return m.first(s), true
}

// ErrNotIndexed is Find's error for a blob no index lists: as far as
// the repository knows, no pack holds it.
var ErrNotIndexed = errors.New("not in the index")

// ErrIncomplete is Find's error, beside ErrNotIndexed, when the index
// could not be read whole (its Base failed a read): the blob may be
// stored nonetheless.
var ErrIncomplete = errors.New("the index could not be read whole")

// Find is Lookup that says why it found nothing: ErrNotIndexed, and
// beside it the Base's error (Err) when the Base could not be read
// whole, since the blob may then be stored nonetheless (a damaged local
// cache, not a lost blob). Every reader that reports a blob not found
// says it with this error.
func (m *Map) Find(bid id.ID) (Entry, error) {
	if e, ok := m.Lookup(bid); ok {
		return e, nil
	}
	if err := m.Err(); err != nil {
		return Entry{}, fmt.Errorf("%w, but %w, so it may be stored: %w", ErrNotIndexed, ErrIncomplete, err)
	}
	return Entry{}, ErrNotIndexed
}

// Locations returns every location of blob bid, Lookup's first, or nil if
// the blob is unknown.
func (m *Map) Locations(bid id.ID) []Entry {
	var es []Entry
	if m.base != nil {
		es = m.base.AppendLocations(nil, bid)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, s := m.find(&bid)
	if s == nil {
		return es
	}
	return m.appendLocations(es, i, s)
}

// appendLocations appends the locations of the blob in slot i, s to es.
// The caller holds m.mu.
func (m *Map) appendLocations(es []Entry, i uint32, s *slot) []Entry {
	es = append(es, m.first(s))
	if s.pack&moreBit != 0 {
		for _, l := range m.more[i] {
			es = append(es, m.entry(s.id, l))
		}
	}
	return es
}

// Err returns the error of the Map's Base (see Base.Err), or nil: when it
// is not nil, a blob that Lookup, Locations or Has did not find may be in
// the Base, which could not be read. A Map in memory only has none.
func (m *Map) Err() error {
	if m.base == nil {
		return nil
	}
	return m.base.Err()
}

// Has reports whether blob bid is known.
func (m *Map) Has(bid id.ID) bool {
	if m.base != nil && m.base.Has(bid) {
		return true
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, s := m.find(&bid)
	return s != nil
}

// Len returns the number of distinct blobs.
func (m *Map) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := int(m.slots.n)
	if m.base != nil {
		n += m.base.Len() - int(m.shadowed)
	}
	return n
}

// Each calls fn for every blob, with its first location, in the order they
// were added (the Base's, in its order, first), until fn returns false.
// Each holds the Map's read lock throughout: fn must not call Add, which
// would deadlock, and Adds from other goroutines wait until Each returns.
func (m *Map) Each(fn func(Entry) bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.base != nil && !m.base.Each(fn) {
		return
	}
	for i := range m.slots.n {
		s := m.slots.at(i)
		if m.shadowed > 0 && m.base.Has(s.id) {
			continue // one more location of a blob of the Base
		}
		if !fn(m.first(s)) {
			return
		}
	}
}

// EachLocation is Each for every location of every blob: a blob in
// several packs is visited once per pack, its first location first (the
// Base's locations, then those added).
func (m *Map) EachLocation(fn func(Entry) bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.base != nil && !m.base.EachLocation(fn) {
		return
	}
	var es []Entry
	for i := range m.slots.n {
		s := m.slots.at(i)
		if s.pack&moreBit == 0 {
			if !fn(m.first(s)) {
				return
			}
			continue
		}
		es = m.appendLocations(es[:0], i, s)
		for _, e := range es {
			if !fn(e) {
				return
			}
		}
	}
}

// Packs returns every distinct pack named by an added entry, in the order
// first seen. It includes packs whose blobs were all already known from
// other packs, so that a caller looking for unindexed packs does not take
// them for orphans.
func (m *Map) Packs() []id.ID {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.base == nil {
		return slices.Clone(m.packs.ids)
	}
	ps := m.base.Packs()
	for _, p := range m.packs.ids {
		if !m.base.HasPack(p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// MemoryBytes returns the bytes the Map's data structures occupy, computed
// from their capacities, and what a Base holds in memory (not its file);
// the side map of blobs in several packs is
// estimated at moreEntryBytes an entry besides its locations.
func (m *Map) MemoryBytes() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := int(unsafe.Sizeof(*m)) + m.slots.memoryBytes() +
		cap(m.buckets)*int(unsafe.Sizeof(uint32(0))) + m.packs.memoryBytes()
	for _, ls := range m.more {
		n += moreEntryBytes + cap(ls)*int(unsafe.Sizeof(location{}))
	}
	if m.base != nil {
		n += m.base.MemoryBytes()
	}
	return n
}

// moreEntryBytes is what one entry of Map.more costs besides its
// locations: key and slice header (32 bytes with padding) in a Go map
// kept between 7/16 and 7/8 full, plus its control byte.
const moreEntryBytes = 56
