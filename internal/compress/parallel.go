package compress

import (
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
)

// Large inputs (a 16 MiB WAL segment that PostgreSQL waits on) are split
// into pieces compressed on all cores, as independent zstd frames one after
// another: a valid zstd stream that any decoder reads. It starts with a
// skippable frame holding the total decoded size, so Decompress sizes its
// output once instead of growing it frame by frame.
const (
	parallelAbove = 4 << 20
	minPiece      = 2 << 20
	// sizeFrameLen is a skippable frame (magic 0x184D2A50, length 8) and
	// the total size as a uint64, all little-endian.
	sizeFrameLen = 16
)

var sizeFrameMagic = [4]byte{0x50, 0x2A, 0x4D, 0x18}

// compressParallel compresses src in pieces on up to GOMAXPROCS cores and
// appends the result to dst; it returns false when src is not worth
// splitting, or when a piece failed (Compress then stores src raw).
func (c *Codec) compressParallel(dst, src []byte) ([]byte, bool) {
	n := min(runtime.GOMAXPROCS(0), len(src)/minPiece)
	if len(src) < parallelAbove || n < 2 {
		return nil, false
	}
	piece := (len(src) + n - 1) / n
	outs := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			part := src[i*piece : min(len(src), (i+1)*piece)]
			outs[i], errs[i] = c.enc.appendFrame(nil, part)
		})
	}
	wg.Wait()
	if errors.Join(errs...) != nil {
		return dst, false
	}
	dst = append(dst, sizeFrameMagic[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, 8)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(src)))
	for _, o := range outs {
		dst = append(dst, o...)
	}
	return dst, true
}

// declaredSize returns the total size a leading size frame declares.
func declaredSize(src []byte) (uint64, bool) {
	if len(src) < sizeFrameLen || [4]byte(src[:4]) != sizeFrameMagic || binary.LittleEndian.Uint32(src[4:8]) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(src[8:16]), true
}
