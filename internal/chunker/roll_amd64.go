//go:build amd64 && !purego

package chunker

import "golang.org/x/sys/cpu"

//go:generate go run gen.go

// roll1 is rollGo in assembly (roll_amd64.s).
//
//go:noescape
func roll1(d []byte, fp uint64, gear *[256]uint64, mask uint64) (int, uint64, bool)

// rollBlocks continues the gear hash fp over d's whole blocks of 64 bytes
// with AVX-512 (rollblocks_amd64.s, written by gen.go) and stops before
// the first block that holds a cut, one whose hash after some byte is at
// most limit. It returns the bytes it passed (a multiple of 64), the hash
// after them, and whether it stopped at a block with a cut.
//
//go:noescape
func rollBlocks(d []byte, fp uint64, planes *[8][256]byte, limit uint64) (n int, f uint64, cut bool)

// haveBlocks says whether rollBlocks can run here: it needs AVX-512 F,
// BW and VBMI (byte permutes), and AVX2 (its last extract).
var haveBlocks = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VBMI && cpu.X86.HasAVX2

// roll is rollGo. With AVX-512, whole blocks of 64 bytes go through
// rollBlocks, which compares each hash with a limit: a mask of high bits
// (every mask the chunker uses) is clear exactly when the hash is at most
// its complement. The block with a cut, and the bytes after the last
// whole block, go through roll1.
func roll(d []byte, fp uint64, g gears, mask uint64) (int, uint64, bool) {
	limit := ^mask
	if !haveBlocks || len(d) < 64 || limit&(limit+1) != 0 {
		return roll1(d, fp, g.table, mask)
	}
	n, f, cut := rollBlocks(d, fp, g.planes, limit)
	end := len(d)
	if cut {
		end = n + 64
	}
	m, f, cut := roll1(d[n:end], f, g.table, mask)
	return n + m, f, cut
}
