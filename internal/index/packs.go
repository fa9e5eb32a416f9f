package index

import (
	"encoding/binary"
	"unsafe"

	"github.com/nestguard/nestguard/internal/id"
)

// packTable numbers the distinct packs of a Map so that each slot stores a
// 4-byte pack number instead of a 32-byte pack ID.
//
// It finds a pack's number through an open-addressing hash table of uint32
// rather than a Go map: that costs 8 to 16 bytes per pack instead of about
// 60, and, unlike a Go map, its size can be computed exactly from its
// capacity, which MemoryBytes reports.
type packTable struct {
	ids   []id.ID
	table []uint32 // 1 + index into ids, 0 = empty; power-of-two length >= 2*len(ids)
}

// intern returns the number of pack p, adding it if it is new.
func (t *packTable) intern(p id.ID) uint32 {
	if len(t.table) > 0 {
		mask := uint64(len(t.table) - 1)
		// Pack IDs are SHA-256 hashes, so their first bytes are uniform.
		for h := binary.LittleEndian.Uint64(p[:8]) & mask; ; h = (h + 1) & mask {
			v := t.table[h]
			if v == 0 {
				break
			}
			if t.ids[v-1] == p {
				return v - 1
			}
		}
	}
	if len(t.ids) == maxPacks {
		panic("index: more than 2^30 packs")
	}
	n := uint32(len(t.ids))
	t.ids = append(t.ids, p)
	if 2*len(t.ids) > len(t.table) {
		t.rehash(max(64, 2*len(t.table)))
	} else {
		t.insert(n)
	}
	return n
}

// insert places ids[n] in the table, which must have a free cell.
func (t *packTable) insert(n uint32) {
	mask := uint64(len(t.table) - 1)
	h := binary.LittleEndian.Uint64(t.ids[n][:8]) & mask
	for t.table[h] != 0 {
		h = (h + 1) & mask
	}
	t.table[h] = n + 1
}

func (t *packTable) rehash(size int) {
	t.table = make([]uint32, size)
	for n := range t.ids {
		t.insert(uint32(n))
	}
}

func (t *packTable) memoryBytes() int {
	return cap(t.ids)*id.Size + cap(t.table)*int(unsafe.Sizeof(uint32(0)))
}
