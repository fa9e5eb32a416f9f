//go:build cgo

package compress

import (
	"sync"

	"github.com/DataDog/zstd"
)

// Implementation names the zstd encoder this build uses.
const Implementation = "libzstd " + zstdVersion + " (cgo)"

// HeapReserve is the Go heap the encoders keep: none, libzstd's match
// tables are C memory (a few MiB a context).
const HeapReserve = 0

// zstdVersion is the libzstd release github.com/DataDog/zstd compiles in.
const zstdVersion = "1.5.7"

// cParams are the libzstd settings of l for inputs of a size class.
// Level 3 is zstd's own default (the one borg uses); 7 and 11 are about
// what klauspost's "better" and "best" give, at a similar speed.
//
// Default replaces level 3's strategy (dfast) by fast for inputs above the
// small class, keeping level 3's tables (a 128K-entry hash, 5-byte minimum
// matches). On PostgreSQL data it is both smaller and faster: over a data
// directory after pgbench (tables, indexes, WAL) the repository is 3.3%
// smaller and a backup takes 14% less user CPU. On general data it is the
// other side of a trade: 0.3-4.2% larger on text, CSV, JSON logs, source
// code and executables, for 14-30% faster compression (docs/benchmarks.md,
// "Compression strategy"). Small files keep dfast, whose ratio on text
// is the better one and whose cost there is small.
func (l Level) cParams(class int) cParams {
	switch l {
	case Fastest:
		return cParams{level: 1}
	case Better:
		return cParams{level: 7}
	case Best:
		return cParams{level: 11}
	}
	if class == smallClass {
		return cParams{level: 3}
	}
	return cParams{level: 3, strategy: zstdFast}
}

// cEncoder keeps the libzstd contexts it made for reuse: a context owns
// its match tables, is used by one goroutine at a time, and costs more to
// make than compressing a small file. There are as many as compressions
// ever ran at once (the workers, and the pieces of a large input).
//
// Small inputs get contexts of their own. libzstd sizes a context's tables
// to its input and frees tables more than 3x too large after 128 calls, so
// one context alternating small files and large chunks would reallocate
// its tables again and again, and glibc's per-thread arenas keep what that
// frees (measured: 31 MiB of C heap on 100,000 small files).
type cEncoder struct {
	level Level
	pools [2]ctxPool[*cContext] // by sizeClass
}

// ctxPool keeps every libzstd context made, for reuse by one goroutine at
// a time; there are as many as were ever in use at once.
type ctxPool[T any] struct {
	mu   sync.Mutex
	free []T
}

func (p *ctxPool[T]) get(create func() T) T {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := len(p.free)
	if k == 0 {
		return create()
	}
	c := p.free[k-1]
	p.free = p.free[:k-1]
	return c
}

func (p *ctxPool[T]) put(c T) {
	p.mu.Lock()
	p.free = append(p.free, c)
	p.mu.Unlock()
}

// smallInput is the largest input of the small class: the sizes below it
// share libzstd's smallest parameter sets.
const smallInput = 128 << 10

// The size classes.
const (
	smallClass = iota
	largeClass
)

func sizeClass(n int) int {
	if n <= smallInput {
		return smallClass
	}
	return largeClass
}

type cContext struct {
	cc *cctx
	// out receives frames when dst has no room for the worst case; only
	// the bytes written become resident, so its size costs little.
	out []byte
}

func newEncoder(l Level, _ int) encoder {
	return &cEncoder{level: l}
}

// newProbeEncoder compresses samples; libzstd sizes its tables to each
// input, so the 8 KiB samples cost no large state.
func newProbeEncoder(n int) encoder {
	return newEncoder(Fastest, n)
}

func (e *cEncoder) appendFrame(dst, src []byte) ([]byte, error) {
	class := sizeClass(len(src))
	pool := &e.pools[class]
	c := pool.get(func() *cContext { return new(cContext) })
	defer pool.put(c)
	if c.cc == nil {
		cc, err := newCCtx(e.level.cParams(class))
		if err != nil {
			return dst, err
		}
		c.cc = cc
	}
	bound := zstd.CompressBound(len(src))
	if cap(dst)-len(dst) >= bound {
		// Straight into dst: libzstd writes from the start of the slice
		// it is given.
		out, err := c.cc.compress(dst[len(dst):len(dst)+bound], src)
		if err != nil {
			return dst, err
		}
		return dst[:len(dst)+len(out)], nil
	}
	if cap(c.out) < bound {
		c.out = make([]byte, bound)
	}
	out, err := c.cc.compress(c.out[:bound], src)
	if err != nil {
		return dst, err
	}
	return append(dst, out...), nil
}

// cDecoder keeps libzstd decompression contexts for reuse, as cEncoder
// keeps compression ones.
type cDecoder struct {
	pool ctxPool[zstd.Ctx]
}

func newExactDecoder() exactDecoder { return &cDecoder{} }

func (d *cDecoder) decodeExact(dst, src []byte, n int) ([]byte, bool) {
	if n == 0 || len(src) == 0 {
		return nil, false
	}
	c := d.pool.get(zstd.NewCtx)
	defer d.pool.put(c)
	// libzstd stops at the room it is given, so a stream that decodes to
	// more than it declares fails here instead of overrunning; one that
	// decodes to less is caught by the count.
	got, err := c.DecompressInto(dst[len(dst):len(dst)+n], src)
	if err != nil || got != n {
		return nil, false
	}
	return dst[:len(dst)+n], true
}
