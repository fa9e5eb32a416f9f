//go:build !amd64 || purego

package chunker

func roll(d []byte, fp uint64, g gears, mask uint64) (int, uint64, bool) {
	return rollGo(d, fp, g.table, mask)
}
