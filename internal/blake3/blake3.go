// Package blake3 hashes with BLAKE3 (plain and keyed, 32 bytes of output)
// on the calling goroutine, with the SIMD compression functions of
// lukechampine.com/blake3/guts: sixteen 1 KiB chunks at once with
// AVX-512, eight with AVX2.
//
// Every stored byte of a BLAKE3 repository is hashed twice (its keyed
// blob ID, then its pack's name), so this is a third of a backup's CPU
// time. On the machine of docs/benchmarks.md this hashes 1 MiB at 5.4
// GB/s on one core, where github.com/zeebo/blake3 (AVX2 only) took 4.1.
// lukechampine.com/blake3's own Hasher starts goroutines in every Write
// longer than a chunk, which cost more than the hashing on the blobs of a
// backup; this package is the few lines of tree bookkeeping around guts
// that it needs instead.
package blake3

import (
	"encoding/binary"
	"math/bits"
	"sync"

	"lukechampine.com/blake3/guts"
)

// Size is the length of a sum in bytes.
const Size = 32

// KeySize is the length of a key in bytes.
const KeySize = 32

// bufSize is what one SIMD compression takes: 16 chunks.
const bufSize = guts.MaxSIMD * guts.ChunkSize

// Hasher is a streaming BLAKE3 hash; it implements hash.Hash. Sum does
// not change its state, so the hash of a prefix may be taken on the way.
type Hasher struct {
	key   [8]uint32
	flags uint32
	// chunks counts the chunks compressed into stack so far (a multiple of
	// 16); bit i set means stack[i] holds the root of a subtree of 2^i
	// chunks not yet merged.
	chunks uint64
	stack  [64][8]uint32
	buf    [bufSize]byte
	buflen int
}

// New returns a plain BLAKE3 hash.
func New() *Hasher { return &Hasher{key: guts.IV} }

// NewKeyed returns a keyed BLAKE3 hash (BLAKE3's keyed_hash mode).
func NewKeyed(key *[KeySize]byte) *Hasher {
	h := &Hasher{flags: guts.FlagKeyedHash}
	for i := range h.key {
		h.key[i] = binary.LittleEndian.Uint32(key[i*4:])
	}
	return h
}

var plain = sync.Pool{New: func() any { return New() }}

// Sum256 returns the plain BLAKE3 hash of data.
func Sum256(data []byte) (sum [Size]byte) {
	if len(data) <= guts.ChunkSize {
		return root(guts.CompressChunk(data, &guts.IV, 0, 0))
	}
	h := plain.Get().(*Hasher)
	h.Write(data)
	sum = h.sum256()
	h.Reset()
	plain.Put(h)
	return sum
}

// Write adds p to the hash; it never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	n := len(p)
	if h.buflen > 0 {
		c := copy(h.buf[h.buflen:], p)
		h.buflen += c
		p = p[c:]
		if len(p) == 0 {
			// A full buffer stays until more input comes: the last 16
			// chunks are compressed by Sum, as the tree's right edge.
			return n, nil
		}
		h.push(guts.CompressBuffer(&h.buf, bufSize, &h.key, h.chunks, h.flags))
		h.buflen = 0
	}
	for len(p) > bufSize {
		h.push(guts.CompressBuffer((*[bufSize]byte)(p), bufSize, &h.key, h.chunks, h.flags))
		p = p[bufSize:]
	}
	h.buflen = copy(h.buf[:], p)
	return n, nil
}

// push adds the root of the next 16 chunks to the stack, merging it with
// the subtrees of its size on the way up.
func (h *Hasher) push(n guts.Node) {
	cv := guts.ChainingValue(n)
	i := bits.TrailingZeros(guts.MaxSIMD)
	for h.chunks&(1<<i) != 0 {
		cv = guts.ChainingValue(guts.ParentNode(h.stack[i], cv, &h.key, h.flags))
		i++
	}
	h.stack[i] = cv
	h.chunks += guts.MaxSIMD
}

// sum256 returns the hash of what was written, leaving the state as it is.
func (h *Hasher) sum256() [Size]byte {
	var n guts.Node
	if h.buflen <= guts.ChunkSize {
		n = guts.CompressChunk(h.buf[:h.buflen], &h.key, h.chunks, h.flags)
	} else {
		n = guts.CompressBuffer(&h.buf, h.buflen, &h.key, h.chunks, h.flags)
	}
	for i := bits.TrailingZeros64(h.chunks); i < bits.Len64(h.chunks); i++ {
		if h.chunks&(1<<i) != 0 {
			n = guts.ParentNode(h.stack[i], guts.ChainingValue(n), &h.key, h.flags)
		}
	}
	return root(n)
}

// root finishes n as the root of the tree and returns its first 32 bytes.
func root(n guts.Node) (sum [Size]byte) {
	n.Flags |= guts.FlagRoot
	out := guts.WordsToBytes(guts.CompressNode(n))
	copy(sum[:], out[:])
	return sum
}

// Sum appends the hash of what was written to b.
func (h *Hasher) Sum(b []byte) []byte {
	s := h.sum256()
	return append(b, s[:]...)
}

// Reset forgets what was written; the key stays.
func (h *Hasher) Reset() { h.chunks, h.buflen = 0, 0 }

// Clone returns a copy of h in its current state.
func (h *Hasher) Clone() *Hasher {
	c := *h
	return &c
}

// Clear zeroes the key and everything written; h must not be used after.
func (h *Hasher) Clear() {
	clear(h.key[:])
	clear(h.stack[:])
	clear(h.buf[:])
	h.Reset()
}

// Size returns Size.
func (h *Hasher) Size() int { return Size }

// BlockSize returns BLAKE3's block size, 64.
func (h *Hasher) BlockSize() int { return guts.BlockSize }
