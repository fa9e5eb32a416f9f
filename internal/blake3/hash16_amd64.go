//go:build amd64 && !purego

package blake3

import "golang.org/x/sys/cpu"

//go:generate go run gen.go

// hash16 runs BLAKE3's compression on sixteen inputs at once (AVX-512):
// input l is blocks 64-byte blocks at in + l*stride, compressed in a
// chain from key with counter ctr[0][l] | ctr[1][l]<<32, block length 64
// and flags (start added for the first block, end for the last); out[l]
// is the chaining value after its last block.
//
//go:noescape
func hash16(out *[16][8]uint32, in *byte, stride, blocks uintptr, key *[8]uint32, ctr *[2][16]uint32, flags, start, end uint64)

// have16 says whether hash16 can run here: it needs AVX-512 F, and VL
// for its stores of 256 bits from the upper registers.
var have16 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL
