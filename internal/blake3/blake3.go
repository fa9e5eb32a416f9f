// Package blake3 hashes with BLAKE3 (plain and keyed, 32 bytes of output)
// on the calling goroutine.
//
// Every stored byte of a BLAKE3 repository is hashed twice (its keyed
// blob ID, then its pack's name), so this is a third of a backup's CPU
// time. Where the CPU has AVX-512, a long input is hashed in subtrees of
// up to 256 chunks by hash16 (hash16_amd64.s, written by gen.go): their
// chunks sixteen at a time, then each level of parents sixteen at a time.
// Elsewhere, and for the last 16 chunks, the compression functions of
// lukechampine.com/blake3/guts do it, sixteen chunks at once (AVX-512) or
// eight (AVX2), merging each sixteen on eight lanes and leaving the
// levels above to one compression at a time: a fifth of the hashing. On
// the machine of docs/benchmarks.md, 1 MiB hashes at 6.1 GB/s on one
// core with hash16, 5.2 with guts alone, 4.1 with github.com/zeebo/blake3
// (AVX2 only); 1.2 MiB pieces of data not in the cache at 4.8, 3.9.
// lukechampine.com/blake3's own Hasher starts goroutines in every Write
// longer than a chunk, which cost more than the hashing on the blobs of a
// backup; this package is the tree bookkeeping around the compression
// functions that it needs instead.
package blake3

import (
	"encoding/binary"
	"math/bits"
	"sync"
	"unsafe"

	"lukechampine.com/blake3/guts"
)

// Size is the length of a sum in bytes.
const Size = 32

// KeySize is the length of a key in bytes.
const KeySize = 32

// bufSize is what one SIMD compression takes: 16 chunks, a subtree of
// level bufLevel.
const (
	bufSize  = guts.MaxSIMD * guts.ChunkSize
	bufLevel = 4
)

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
		h.push16(&h.buf)
		h.buflen = 0
	}
	for len(p) > bufSize {
		if !have16 {
			h.push16((*[bufSize]byte)(p))
			p = p[bufSize:]
			continue
		}
		// The largest subtree that starts here (a power of two chunks
		// the count so far is a multiple of) and is not the last input.
		level := min(bits.TrailingZeros64(h.chunks|maxBatch), bits.Len(uint(len(p)-1))-1-10)
		size := guts.ChunkSize << level
		h.push(h.subtree(p[:size]), level)
		p = p[size:]
	}
	h.buflen = copy(h.buf[:], p)
	return n, nil
}

// push16 adds the next 16 chunks, b, compressed by guts.
func (h *Hasher) push16(b *[bufSize]byte) {
	h.push(guts.ChainingValue(guts.CompressBuffer(b, bufSize, &h.key, h.chunks, h.flags)), bufLevel)
}

// push adds cv, the chaining value of the next 2^level chunks (a count
// so far that is a multiple of them), to the stack, merging it with the
// subtrees of its size on the way up.
func (h *Hasher) push(cv [8]uint32, level int) {
	i := level
	for h.chunks&(1<<i) != 0 {
		cv = guts.ChainingValue(guts.ParentNode(h.stack[i], cv, &h.key, h.flags))
		i++
	}
	h.stack[i] = cv
	h.chunks += 1 << level
}

// counters sets ctr to hash16's counters of sixteen inputs from c, step
// apart: 1 for chunks, 0 for parents.
func counters(ctr *[2][16]uint32, c, step uint64) {
	for l := range 16 {
		n := c + uint64(l)*step
		ctr[0][l], ctr[1][l] = uint32(n), uint32(n>>32)
	}
}

// maxBatch is the most chunks subtree hashes at once: 256 (256 KiB),
// whose chaining values take 8 KiB.
const maxBatch = 256

// subtree returns the chaining value of p, a power of two chunks from 16
// to maxBatch that continue the input (a subtree of the hash, not its
// root): their chunks sixteen at a time, then each level of parents
// sixteen at a time (hash16). guts.CompressBuffer merges each 16 chunks
// by itself, on 8 lanes, and leaves their root and the levels above to
// one compression at a time: a fifth of the hashing time.
func (h *Hasher) subtree(p []byte) [8]uint32 {
	// A level of fewer than 16 parents reads the blocks of 16 all the
	// same: the first 32 chaining values, within cvs.
	var cvs [maxBatch][8]uint32
	var ctr [2][16]uint32
	n := len(p) / guts.ChunkSize
	for g := 0; g < n; g += 16 {
		counters(&ctr, h.chunks+uint64(g), 1)
		hash16((*[16][8]uint32)(cvs[g:]), &p[g*guts.ChunkSize], guts.ChunkSize, guts.ChunkSize/guts.BlockSize, &h.key, &ctr, uint64(h.flags), guts.FlagChunkStart, guts.FlagChunkEnd)
	}
	counters(&ctr, 0, 0)
	// Each level in place: the parents of cvs[32q:32q+32] go to
	// cvs[16q:16q+16], which no later group reads.
	for ; n > 1; n /= 2 {
		for q := 0; q < n/2; q += 16 {
			hash16((*[16][8]uint32)(cvs[q:]), (*byte)(unsafe.Pointer(&cvs[2*q])), guts.BlockSize, 1, &h.key, &ctr, uint64(h.flags|guts.FlagParent), 0, 0)
		}
	}
	return cvs[0]
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
