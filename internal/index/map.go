package index

import (
	"encoding/binary"
	"slices"
	"sync"
	"unsafe"

	"github.com/nestguard/nestguard/internal/id"
)

// Map is the in-memory index of every blob: blob ID to location. It is safe
// for concurrent use.
//
// A repository of 100 TB in 1 MiB chunks has 1e8 blobs, so the Map is built
// to cost under 64 bytes a blob (a Go map of Entry costs over 100): one
// 52-byte slot per blob in a paged array, chained hash buckets of 4 bytes
// indexed by the blob ID's first bytes (IDs are keyed hashes, so uniform),
// and a pack table that replaces each 32-byte pack ID by a 4-byte number.
type Map struct {
	mu      sync.RWMutex
	slots   slotArray
	buckets []uint32 // 1 + index of a chain's first slot, 0 = empty; power-of-two length
	packs   packTable
}

const minBuckets = 64

// NewMap returns an empty Map.
func NewMap() *Map {
	return &Map{buckets: make([]uint32, minBuckets)}
}

func bucketOf(bid *id.ID, n int) uint64 {
	return binary.LittleEndian.Uint64(bid[:8]) & uint64(n-1)
}

// Add records where blob e.ID is. If the blob is already known, the first
// location is kept: a blob may sit in two packs after concurrent backups,
// and either copy serves. e.Pack is still recorded (see Packs).
//
// Only DataBlob and TreeBlob can be stored; any other type is recorded as
// TreeBlob, so callers must check the types of untrusted input (Decode does).
// A Map holds at most 2^32-1 blobs in 2^31 packs, far beyond what memory
// allows (2^32 blobs take over 200 GiB); Add panics past that.
func (m *Map) Add(e Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.packs.intern(e.Pack)
	if m.find(&e.ID) != nil {
		return
	}
	if m.slots.n == maxSlots {
		panic("index: more than 2^32-1 blobs")
	}
	// Keep chains at two slots on average.
	if int(m.slots.n) >= 2*len(m.buckets) {
		m.rehash(2 * len(m.buckets))
	}
	if e.Type != DataBlob {
		p |= treeBit
	}
	i, s := m.slots.push()
	*s = slot{id: e.ID, pack: p, offset: e.Offset, length: e.Length, rawLength: e.RawLength}
	b := bucketOf(&e.ID, len(m.buckets))
	s.next = m.buckets[b]
	m.buckets[b] = i + 1
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

// find returns the slot of bid, or nil. The caller holds m.mu.
func (m *Map) find(bid *id.ID) *slot {
	for i := m.buckets[bucketOf(bid, len(m.buckets))]; i != 0; {
		s := m.slots.at(i - 1)
		if s.id == *bid {
			return s
		}
		i = s.next
	}
	return nil
}

func (m *Map) entry(s *slot) Entry {
	t := DataBlob
	if s.pack&treeBit != 0 {
		t = TreeBlob
	}
	return Entry{
		ID:        s.id,
		Type:      t,
		Pack:      m.packs.ids[s.pack&^treeBit],
		Offset:    s.offset,
		Length:    s.length,
		RawLength: s.rawLength,
	}
}

// Lookup returns the location of blob bid.
func (m *Map) Lookup(bid id.ID) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := m.find(&bid)
	if s == nil {
		return Entry{}, false
	}
	return m.entry(s), true
}

// Has reports whether blob bid is known.
func (m *Map) Has(bid id.ID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.find(&bid) != nil
}

// Len returns the number of distinct blobs.
func (m *Map) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(m.slots.n)
}

// Each calls fn for every blob, in the order they were added, until fn
// returns false. Each holds the Map's read lock throughout: fn must not call
// Add, which would deadlock, and Adds from other goroutines wait until Each
// returns.
func (m *Map) Each(fn func(Entry) bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for i := range m.slots.n {
		if !fn(m.entry(m.slots.at(i))) {
			return
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
	return slices.Clone(m.packs.ids)
}

// MemoryBytes returns the bytes the Map's data structures occupy, computed
// from their capacities.
func (m *Map) MemoryBytes() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(unsafe.Sizeof(*m)) + m.slots.memoryBytes() +
		cap(m.buckets)*int(unsafe.Sizeof(uint32(0))) + m.packs.memoryBytes()
}
