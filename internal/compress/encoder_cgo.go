//go:build cgo

package compress

import (
	"fmt"

	"github.com/DataDog/zstd"
)

// Implementation names the zstd encoder this build uses.
const Implementation = "libzstd " + zstdVersion + " (cgo)"

// zstdVersion is the libzstd release github.com/DataDog/zstd compiles in.
const zstdVersion = "1.5.7"

// cLevel is the libzstd level of l. Level 3 is zstd's own default (the
// one borg uses); 7 and 11 are about what klauspost's "better" and "best"
// give, at a similar speed.
func (l Level) cLevel() int {
	switch l {
	case Fastest:
		return 1
	case Better:
		return 7
	case Best:
		return 11
	}
	return 3
}

// cEncoder keeps up to n libzstd contexts: a context owns its match tables
// and is used by one goroutine at a time. Creating one costs more than
// compressing a small file, so they are kept; a caller that finds none
// free makes another, which is dropped (and freed by its finalizer) if the
// pool is full when it is done.
type cEncoder struct {
	level int
	free  chan *cContext
}

type cContext struct {
	ctx zstd.Ctx
	// out receives frames when dst has no room for the worst case; only
	// the bytes written become resident, so its size costs little.
	out []byte
}

func newEncoder(l Level, n int) encoder {
	return &cEncoder{level: l.cLevel(), free: make(chan *cContext, n)}
}

// newProbeEncoder compresses samples; libzstd sizes its tables to each
// input, so the 8 KiB samples cost no large state.
func newProbeEncoder(n int) encoder {
	return newEncoder(Fastest, n)
}

func (e *cEncoder) appendFrame(dst, src []byte) ([]byte, error) {
	var c *cContext
	select {
	case c = <-e.free:
	default:
		c = &cContext{ctx: zstd.NewCtx()}
	}
	defer func() {
		select {
		case e.free <- c:
		default:
		}
	}()
	bound := zstd.CompressBound(len(src))
	if cap(dst)-len(dst) >= bound {
		// Straight into dst: libzstd writes from the start of the slice
		// it is given.
		out, err := c.ctx.CompressLevel(dst[len(dst):len(dst)+bound], src, e.level)
		if err != nil {
			return dst, fmt.Errorf("libzstd: %w", err)
		}
		return dst[:len(dst)+len(out)], nil
	}
	if cap(c.out) < bound {
		c.out = make([]byte, bound)
	}
	out, err := c.ctx.CompressLevel(c.out[:bound], src, e.level)
	if err != nil {
		return dst, fmt.Errorf("libzstd: %w", err)
	}
	return append(dst, out...), nil
}
