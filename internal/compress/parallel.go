package compress

import (
	"encoding/binary"
	"errors"
	"github.com/klauspost/compress/zstd"
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
	room := frameBound(piece)
	if cap(dst)-len(dst) >= sizeFrameLen+n*room {
		return c.compressInPlace(dst, src, n, piece, room)
	}
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
	dst = appendSizeFrame(dst, len(src))
	for _, o := range outs {
		dst = append(dst, o...)
	}
	return dst, true
}

// compressInPlace is compressParallel into a dst with room for every
// piece's worst case (Bound): each piece is compressed straight into its
// own stretch of dst, and the frames are then moved down to follow each
// other, without a buffer per piece or a second copy. Only the pages
// written are touched, so the room costs address space, not memory.
func (c *Codec) compressInPlace(dst, src []byte, n, piece, room int) ([]byte, bool) {
	orig := len(dst)
	dst = appendSizeFrame(dst, len(src))
	start := len(dst)
	dst = dst[:start+n*room]
	outs := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			part := src[i*piece : min(len(src), (i+1)*piece)]
			at := start + i*room
			outs[i], errs[i] = c.enc.appendFrame(dst[at:at:at+room], part)
		})
	}
	wg.Wait()
	if errors.Join(errs...) != nil {
		return dst[:orig], false
	}
	for _, o := range outs {
		// A frame over its room (an encoder that grew its own copy)
		// could be overwritten by the one before it moving down.
		if len(o) > room {
			return dst[:orig], false
		}
	}
	pos := start
	for _, o := range outs {
		// Down over its room or in place: copy moves overlapping bytes.
		pos += copy(dst[pos:], o)
	}
	return dst[:pos], true
}

func appendSizeFrame(dst []byte, n int) []byte {
	dst = append(dst, sizeFrameMagic[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, 8)
	return binary.LittleEndian.AppendUint64(dst, uint64(n))
}

// Bound is the most bytes Compress appends for n bytes of input. A dst
// with that much room also lets a large input be compressed without
// buffers of its own (archive-wal seals a segment in such a buffer).
func Bound(n int) int {
	b := frameBound(n)
	if p := min(runtime.GOMAXPROCS(0), n/minPiece); n >= parallelAbove && p >= 2 {
		b = max(b, sizeFrameLen+p*frameBound((n+p-1)/p))
	}
	return b
}

// frameBound is the most bytes a zstd frame of n bytes of input takes
// (ZSTD_COMPRESSBOUND of zstd.h).
func frameBound(n int) int {
	b := n + n>>8
	if n < 128<<10 {
		b += (128<<10 - n) >> 11
	}
	return b
}

// DecodedSize returns the size src decodes to, where it declares it (a
// leading size frame, or the first frame's content size): what to
// allocate before Decompress. Decompress checks the declaration.
func DecodedSize(src []byte) (int, bool) {
	if n, ok := declaredSize(src); ok && n <= maxDecoded {
		return int(n), true
	}
	var h zstd.Header
	if err := h.Decode(src); err == nil && h.HasFCS && h.FrameContentSize <= maxDecoded {
		return int(h.FrameContentSize), true
	}
	return 0, false
}

// declaredSize returns the total size a leading size frame declares.
func declaredSize(src []byte) (uint64, bool) {
	if len(src) < sizeFrameLen || [4]byte(src[:4]) != sizeFrameMagic || binary.LittleEndian.Uint32(src[4:8]) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(src[8:16]), true
}
