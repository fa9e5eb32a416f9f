//go:build !cgo

package compress

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Implementation names the zstd encoder this build uses.
const Implementation = pureGo

// HeapReserve is the Go heap the encoders keep: each concurrent encoder's
// window history and match tables.
const HeapReserve = 16 << 20

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

// Window sizes. Each concurrent encoder keeps a history of its window, so
// the window is the main term of the codec's memory; blobs average about
// 1.2 MiB and the largest is 8 MiB, and matches further back than 2 MiB add
// little (measured: under 1% on PostgreSQL data and text). The probe only
// sees 8 KiB samples: a small window keeps its state small, whatever the
// codec's level.
const (
	blobWindow  = 2 << 20
	probeWindow = 64 << 10
)

type goEncoder struct{ enc *zstd.Encoder }

func newEncoder(l Level, n int) encoder {
	return goEncoder{newGoEncoder(l.zstd(), n, blobWindow)}
}

func newProbeEncoder(n int) encoder {
	return goEncoder{newGoEncoder(zstd.SpeedFastest, n, probeWindow)}
}

func (e goEncoder) appendFrame(dst, src []byte) ([]byte, error) {
	return e.enc.EncodeAll(src, dst), nil
}

func newGoEncoder(l zstd.EncoderLevel, n, window int) *zstd.Encoder {
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

// newExactDecoder: klauspost's decoder serves every input.
func newExactDecoder() exactDecoder { return nil }
