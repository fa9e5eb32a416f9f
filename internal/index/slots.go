package index

import (
	"unsafe"

	"github.com/nestguard/nestguard/internal/id"
)

// slot is one blob in a Map. Its fields are ordered and sized so that it
// takes 52 bytes with no padding: the bulk of the Map's memory is one slot
// per blob.
type slot struct {
	id        id.ID
	pack      uint32 // index into the pack table; treeBit marks tree blobs, moreBit more locations
	offset    uint32
	length    uint32
	rawLength uint32
	next      uint32 // 1 + index of the next slot in the same bucket; 0 ends the chain
}

const (
	// treeBit is the top bit of slot.pack (and of location.pack); moreBit,
	// the next, marks a blob with more locations (Map.more). The other 30
	// bits index packs: 2^30 packs of 16 MiB are 16 PiB.
	treeBit  = 1 << 31
	moreBit  = 1 << 30
	packMask = moreBit - 1
	maxPacks = moreBit

	// maxSlots keeps 1+index representable in slot.next and bucket heads.
	maxSlots = 1<<32 - 1

	// A page of 4096 slots is 26 runtime pages of 8 KiB exactly, so the
	// allocator rounds nothing up.
	pageBits = 12
	pageLen  = 1 << pageBits
)

type page [pageLen]slot

// slotArray is an append-only array of slots stored in fixed-size pages.
// Growing it allocates one page and never copies slots, so it wastes at most
// one partly used page and never needs twice its size during growth, as a
// plain slice would.
type slotArray struct {
	pages []*page
	n     uint32
}

func (a *slotArray) at(i uint32) *slot {
	return &a.pages[i>>pageBits][i&(pageLen-1)]
}

// push returns the index of a new zero slot and the slot itself.
func (a *slotArray) push() (uint32, *slot) {
	i := a.n
	if int(i>>pageBits) == len(a.pages) {
		a.pages = append(a.pages, new(page))
	}
	a.n++
	return i, a.at(i)
}

func (a *slotArray) memoryBytes() int {
	return cap(a.pages)*int(unsafe.Sizeof((*page)(nil))) + len(a.pages)*int(unsafe.Sizeof(page{}))
}
