package chunker

import (
	"crypto/sha3"
	"encoding/binary"
)

// gearDomain separates the gear table from any other use of the seed.
// Changing it (or the derivation) moves every chunk boundary, which costs
// deduplication against existing backups: it is part of the format.
const gearDomain = "nestguard chunker gear table v1\x00"

// gearTable derives the 256 random 64-bit values of the gear hash from seed:
// SHAKE256(gearDomain || seed), read as 256 little-endian uint64s. Keying the
// table makes chunk boundaries, and so chunk sizes, differ per repository,
// so they do not fingerprint known files.
func gearTable(seed [32]byte) *[256]uint64 {
	in := make([]byte, 0, len(gearDomain)+len(seed))
	in = append(append(in, gearDomain...), seed[:]...)
	raw := sha3.SumSHAKE256(in, 256*8)
	var t [256]uint64
	for i := range t {
		t[i] = binary.LittleEndian.Uint64(raw[i*8:])
	}
	return &t
}

// gears is the gear table in the two forms the hash loops read.
type gears struct {
	table *[256]uint64
	// planes[p][b] is byte p (little-endian) of table[b]: the loop of 64
	// bytes at a time looks the values up a byte at a time.
	planes *[8][256]byte
}

func newGears(seed [32]byte) gears {
	t := gearTable(seed)
	var planes [8][256]byte
	for b, v := range t {
		for p := range planes {
			planes[p][b] = byte(v >> (8 * p))
		}
	}
	return gears{table: t, planes: &planes}
}
