package compress

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Decompress appends the decoded src to dst. It fails, with an error naming
// the limit, if the output would exceed maxLen bytes, and on any malformed
// input.
func (c *Codec) Decompress(dst, src []byte, maxLen int) ([]byte, error) {
	if maxLen < 0 || maxLen > maxDecoded {
		return nil, fmt.Errorf("zstd: output limit %d out of range [0, %d]", maxLen, maxDecoded)
	}
	if len(src) == 0 {
		return nil, errors.New("zstd: no frame: input is empty")
	}
	// The decoder stops at cap(dst) (WithDecodeAllCapLimit), so a bomb
	// costs no more than the room given. A frame that states its size, as
	// ours always do, gets exactly that room; otherwise the room grows
	// geometrically, so a small limit-exceeding input never allocates
	// maxLen.
	room := min(maxLen, max(4*len(src), 64<<10))
	var h zstd.Header
	sized := false
	if total, ok := declaredSize(src); ok {
		// Frames compressed in parallel: the size frame states the total.
		if total > uint64(maxLen) {
			return nil, fmt.Errorf("zstd: data declares %d decoded bytes, over the limit of %d bytes", total, maxLen)
		}
		room, sized = int(total), true
	} else if err := h.Decode(src); err == nil && h.HasFCS {
		if h.FrameContentSize > uint64(maxLen) {
			return nil, fmt.Errorf("zstd: frame declares %d decoded bytes, over the limit of %d bytes", h.FrameContentSize, maxLen)
		}
		room, sized = int(h.FrameContentSize), true
	}
	if sized && c.sized != nil {
		// dst keeps the room, so the path below reuses it.
		dst = reserve(dst, room)
		if out, ok := c.sized.decodeExact(dst, src, room); ok {
			return out, nil
		}
		// Anything else, malformed input above all, takes the path below,
		// whose errors say what is wrong.
	}
	for {
		buf := reserve(dst, room)
		out, err := c.dec.DecodeAll(src, buf)
		if err == nil && len(out)-len(dst) <= maxLen {
			return out, nil
		}
		if err != nil && !errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		// Too large, either for the room given or (when dst brought
		// more spare capacity than maxLen) for maxLen itself.
		if err == nil || cap(buf)-len(buf) >= maxLen {
			return nil, fmt.Errorf("zstd: decoded data exceeds the limit of %d bytes", maxLen)
		}
		room = min(maxLen, 4*room+64<<10)
	}
}

// reserve returns dst with capacity for at least n more bytes, copying it
// if it must grow.
func reserve(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	b := make([]byte, len(dst), len(dst)+n)
	copy(b, dst)
	return b
}
