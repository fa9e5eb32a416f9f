// Package compress compresses blobs with zstd, giving up quickly on data
// that does not compress (encrypted or already-compressed files dominate
// real backups).
package compress

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Level trades compression speed for ratio.
type Level int

// Levels map to zstd levels 1, 3, 7 and 11 with libzstd, and to klauspost's
// encoder speeds of the same names without cgo (see encoder.go).
const (
	Fastest Level = iota
	Default
	Better
	Best
)

// maxDecoded bounds any single Decompress, whatever maxLen says: no stored
// object or blob is near it.
const maxDecoded = 1 << 30

// Codec compresses and decompresses; it is safe for concurrent use.
type Codec struct {
	enc encoder
	// probe compresses samples to decide whether compressing is worth it;
	// it is the fastest level whatever the codec's, since only a yes or
	// no is wanted.
	probe encoder
	dec   *zstd.Decoder
	// sized decodes input whose decoded size is declared, when the build
	// has a faster decoder for it than dec (libzstd); nil otherwise.
	sized exactDecoder
	// scratch holds probe output, which is only measured.
	scratch sync.Pool
}

// NewCodec returns a codec compressing at level l (unknown levels mean
// Default). Any codec decodes what any other produced.
func NewCodec(l Level) *Codec {
	n := runtime.GOMAXPROCS(0)
	enc := newEncoder(l, n)
	probe := newProbeEncoder(n)
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(n),
		zstd.WithDecoderMaxMemory(maxDecoded),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		// Only invalid options fail, and these are constant.
		panic(fmt.Sprintf("compress: creating zstd decoder: %v", err))
	}
	return &Codec{
		enc:     enc,
		probe:   probe,
		dec:     dec,
		sized:   newExactDecoder(),
		scratch: sync.Pool{New: func() any { return new([]byte) }},
	}
}
