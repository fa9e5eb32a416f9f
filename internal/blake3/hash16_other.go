//go:build !amd64 || purego

package blake3

var have16 = false // never true: tests set it false only

func hash16(out *[16][8]uint32, in *byte, stride, blocks uintptr, key *[8]uint32, ctr *[2][16]uint32, flags, start, end uint64) {
	panic("blake3: hash16 without AVX-512")
}
