package chunker

import (
	"fmt"
	"math/bits"
)

// Params are the bounds of content-defined chunks, in bytes.
type Params struct {
	Min, Avg, Max int
}

// DefaultParams returns 512 KiB minimum, 1 MiB average and 8 MiB maximum:
// large enough that the index of a big repository stays small, small
// enough that an edit re-stores little.
func DefaultParams() Params {
	return Params{Min: 512 << 10, Avg: 1 << 20, Max: 8 << 20}
}

// Limits enforced by Validate on stored configurations.
const (
	minMin = 64 << 10
	maxMax = 64 << 20
)

// Validate reports whether p can be used for a repository.
func (p Params) Validate() error {
	if err := p.check(); err != nil {
		return err
	}
	if p.Min < minMin {
		return fmt.Errorf("chunker: minimum chunk size %d is below %d bytes (64 KiB): use a larger minimum", p.Min, minMin)
	}
	if p.Max > maxMax {
		return fmt.Errorf("chunker: maximum chunk size %d is above %d bytes (64 MiB): use a smaller maximum", p.Max, maxMax)
	}
	return nil
}

// check holds the structural rules the splitter relies on, without the size
// limits, so tests can use tiny chunks.
func (p Params) check() error {
	if p.Avg < 16 || p.Avg&(p.Avg-1) != 0 {
		return fmt.Errorf("chunker: average chunk size %d is not a power of two of at least 16: use e.g. %d", p.Avg, 1<<20)
	}
	if p.Min <= 0 || p.Min >= p.Avg {
		return fmt.Errorf("chunker: minimum chunk size %d must be positive and below the average %d", p.Min, p.Avg)
	}
	if p.Max <= p.Avg {
		return fmt.Errorf("chunker: maximum chunk size %d must be above the average %d", p.Max, p.Avg)
	}
	if p.Max > 1<<40 {
		return fmt.Errorf("chunker: maximum chunk size %d is absurdly large", p.Max)
	}
	return nil
}

// masks returns the cut masks of normalized chunking (level 2): before the
// average size a cut needs log2(Avg)+2 zero bits, after it log2(Avg)-2, so
// chunk sizes cluster around Avg. The masks take the high bits of the gear
// hash, which depend on the last 64 bytes; the low bits see only a few.
func (p Params) masks() (strict, loose uint64) {
	b := bits.TrailingZeros(uint(p.Avg))
	return ^uint64(0) << (64 - (b + 2)), ^uint64(0) << (64 - (b - 2))
}
