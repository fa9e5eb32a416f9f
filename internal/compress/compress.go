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

// Levels map to the zstd encoder speeds of the same names.
const (
	Fastest Level = iota
	Default
	Better
	Best
)

func (l Level) zstd() zstd.EncoderLevel {
	switch l {
	case Fastest:
		return zstd.SpeedFastest
	case Better:
		return zstd.SpeedBetterCompression
	case Best:
		return zstd.SpeedBestCompression
	}
	return zstd.SpeedDefault
}

// maxDecoded bounds any single Decompress, whatever maxLen says: no stored
// object or blob is near it.
const maxDecoded = 1 << 30

// Codec compresses and decompresses; it is safe for concurrent use.
type Codec struct {
	enc *zstd.Encoder
	// probe compresses samples to decide whether compressing is worth it;
	// it is the fastest level whatever the codec's, since only a yes or
	// no is wanted.
	probe *zstd.Encoder
	dec   *zstd.Decoder
	// scratch holds probe output, which is only measured.
	scratch sync.Pool
}

// NewCodec returns a codec compressing at level l (unknown levels mean
// Default). Any codec decodes what any other produced.
func NewCodec(l Level) *Codec {
	n := runtime.GOMAXPROCS(0)
	enc := newEncoder(l.zstd(), n, blobWindow)
	// The probe only sees 8 KiB samples: a small window keeps its state
	// small, whatever the codec's level.
	probe := newEncoder(zstd.SpeedFastest, n, probeWindow)
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
		scratch: sync.Pool{New: func() any { return new([]byte) }},
	}
}

// Window sizes. Each concurrent encoder keeps a history of its window, so
// the window is the main term of the codec's memory; blobs average about
// 1.2 MiB and the largest is 8 MiB, and matches further back than 2 MiB add
// little (measured: under 1% on PostgreSQL data and text).
const (
	blobWindow  = 2 << 20
	probeWindow = 64 << 10
)

func newEncoder(l zstd.EncoderLevel, n, window int) *zstd.Encoder {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(l),
		zstd.WithWindowSize(window),
		zstd.WithEncoderConcurrency(n),
		// The sealing that follows authenticates everything.
		zstd.WithEncoderCRC(false),
		// Entropy-code blocks that found no matches too: klauspost skips
		// them at the fast levels, which leaves text without repeats (small
		// files above all) uncompressed. Incompressible input is rejected
		// before this by the sampling, or cheaply by huff0's estimate.
		zstd.WithAllLitEntropyCompression(true),
	)
	if err != nil {
		// Only invalid options fail, and these are constant.
		panic(fmt.Sprintf("compress: creating zstd encoder: %v", err))
	}
	return enc
}
