//go:build cgo

package compress

// github.com/DataDog/zstd compiles libzstd into the binary but its Go API
// sets compression levels only. These declarations reach the parameters of
// libzstd's stable API (zstd.h: ZSTD_CCtx_setParameter, ZSTD_compress2) in
// that same compiled code: encoder_cgo.go imports the package, so the
// symbols are linked, and no second copy of libzstd is.

/*
#include <stddef.h>
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
ZSTD_CCtx* ZSTD_createCCtx(void);
size_t ZSTD_freeCCtx(ZSTD_CCtx* cctx);
size_t ZSTD_CCtx_setParameter(ZSTD_CCtx* cctx, int param, int value);
size_t ZSTD_compress2(ZSTD_CCtx* cctx, void* dst, size_t dstCapacity, const void* src, size_t srcSize);
unsigned ZSTD_isError(size_t code);
const char* ZSTD_getErrorName(size_t code);
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// Parameter numbers and values of zstd.h's stable API.
const (
	zstdCompressionLevel = 100 // ZSTD_c_compressionLevel
	zstdStrategy         = 107 // ZSTD_c_strategy
	zstdFast             = 1   // ZSTD_fast
)

// cParams are the settings of a libzstd compression context: a level, and
// optionally a strategy that replaces the level's own while keeping its
// table sizes. Zero strategy keeps the level's.
type cParams struct {
	level, strategy int
}

// A cctx is a libzstd compression context with its parameters set; it is
// used by one goroutine at a time.
type cctx struct {
	p *C.ZSTD_CCtx
}

func newCCtx(cp cParams) (*cctx, error) {
	p := C.ZSTD_createCCtx()
	if p == nil {
		return nil, errors.New("libzstd: out of memory for a compression context")
	}
	c := &cctx{p: p}
	runtime.AddCleanup(c, func(p *C.ZSTD_CCtx) { C.ZSTD_freeCCtx(p) }, p)
	if err := c.set(zstdCompressionLevel, cp.level); err != nil {
		return nil, err
	}
	if cp.strategy != 0 {
		if err := c.set(zstdStrategy, cp.strategy); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *cctx) set(param, value int) error {
	if r := C.ZSTD_CCtx_setParameter(c.p, C.int(param), C.int(value)); C.ZSTD_isError(r) != 0 {
		return fmt.Errorf("libzstd: setting parameter %d to %d: %s", param, value, C.GoString(C.ZSTD_getErrorName(r)))
	}
	return nil
}

// compress writes one frame of src, declaring its size, to the start of
// dst; len(dst) must be at least CompressBound(len(src)).
func (c *cctx) compress(dst, src []byte) ([]byte, error) {
	r := C.ZSTD_compress2(c.p, unsafe.Pointer(unsafe.SliceData(dst)), C.size_t(len(dst)), unsafe.Pointer(unsafe.SliceData(src)), C.size_t(len(src)))
	runtime.KeepAlive(c)
	if C.ZSTD_isError(r) != 0 {
		return nil, fmt.Errorf("libzstd: %s", C.GoString(C.ZSTD_getErrorName(r)))
	}
	return dst[:r], nil
}
