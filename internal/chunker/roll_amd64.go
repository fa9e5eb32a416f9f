//go:build amd64 && !purego

package chunker

// roll is rollGo in assembly (roll_amd64.s).
//
//go:noescape
func roll(d []byte, fp uint64, gear *[256]uint64, mask uint64) (int, uint64, bool)
