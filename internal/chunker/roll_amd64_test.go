//go:build amd64 && !purego

package chunker

import "testing"

// TestRollWithoutBlocks checks roll as a CPU without AVX-512 VBMI runs
// it: roll1 alone.
func TestRollWithoutBlocks(t *testing.T) {
	defer func(h bool) { haveBlocks = h }(haveBlocks)
	haveBlocks = false
	checkRoll(t)
}
