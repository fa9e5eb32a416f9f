package index

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/nestguard/nestguard/internal/id"
)

// randID fills an ID from r without allocating, so that memory measurements
// see only the Map.
func randID(r *rand.Rand) id.ID {
	var i id.ID
	for k := 0; k < id.Size; k += 8 {
		binary.LittleEndian.PutUint64(i[k:], r.Uint64())
	}
	return i
}

func randIDs(r *rand.Rand, n int) []id.ID {
	ids := make([]id.ID, n)
	for i := range ids {
		ids[i] = randID(r)
	}
	return ids
}

// randEntry returns a blob with a random ID, type and location in pack.
func randEntry(r *rand.Rand, pack id.ID) Entry {
	return Entry{
		ID:        randID(r),
		Type:      BlobType(r.IntN(2)),
		Pack:      pack,
		Offset:    r.Uint32(),
		Length:    r.Uint32(),
		RawLength: r.Uint32(),
	}
}

// fillMap adds n random blobs spread evenly over packs, as backups do: a
// run of consecutive blobs per pack.
func fillMap(m *Map, r *rand.Rand, n int, packs []id.ID) {
	for i := range n {
		m.Add(randEntry(r, packs[i*len(packs)/n]))
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6e657374)) }

// fillMapDup is fillMap with dupPercent of the blobs added again, at once,
// in the next pack, as two concurrent backups store them.
func fillMapDup(m *Map, r *rand.Rand, n int, packs []id.ID, dupPercent int) {
	for i := range n {
		e := randEntry(r, packs[i*len(packs)/n])
		m.Add(e)
		if i%100 < dupPercent {
			e.Pack = packs[(i*len(packs)/n+1)%len(packs)]
			m.Add(e)
		}
	}
}
