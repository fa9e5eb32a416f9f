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

// TestRollBlocksRun says, where the CPU cannot run rollBlocks, that the
// other tests of roll ran roll1 alone.
func TestRollBlocksRun(t *testing.T) {
	if !haveBlocks {
		t.Skip("this CPU lacks AVX-512 F, BW or VBMI (or AVX2): roll's tests ran roll1 alone, not rollBlocks")
	}
}
