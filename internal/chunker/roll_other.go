//go:build !amd64 || purego

package chunker

func roll(d []byte, fp uint64, gear *[256]uint64, mask uint64) (int, uint64, bool) {
	return rollGo(d, fp, gear, mask)
}
