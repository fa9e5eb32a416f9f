// Package diskidx is a read-only blob index in one file that is read
// rather than loaded: the index of a repository too large for its index to
// fit in memory (10^8 blobs take 5.7 GB as an index.Map; here 4.8 GB of
// file, of which a lookup reads 1.5 KB, and about 200 MB of memory). A
// Builder writes the file from the entries of the repository's index
// objects, in any number, with memory bounded by one 256th of them; Open
// checks it; the Table it returns is an index.Base.
//
// The Table reads with pread rather than mapping the file: a mapping's
// pages count in the process's resident memory as lookups touch them, up
// to the whole file, while pages read stay in the kernel's page cache; and
// a read error is an error, not a SIGBUS. A lookup costs a system call
// more than it would through a mapping (docs/benchmarks.md).
//
// The file is a local cache, not part of the repository: it is checked
// whole under the caller's key when opened (an HMAC-SHA-256 over what
// Open keeps in memory, a tag per fanout bucket over the records), and
// every bucket read afterwards is checked against its tag again, so that
// the file changed after Open cannot make a blob look present; it names
// the index objects it was built from (Table.Sources) so that the caller
// can tell whether it is current, and hides the locations it holds under
// a key derived from the repository's (see docs/format.md, "The local
// index cache").
package diskidx

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// Layout (all integers little-endian); docs/format.md has the full text.
//
//	header (128 bytes): magic "NGIC", version (uint32), blob count,
//	  other-location count, pack count, source count (uint64 each),
//	  fanout bits (uint32), 4 zero bytes, salt (16), key check (16),
//	  body length (uint64), MAC (32: HMAC-SHA-256 of the sections after
//	  the buckets, then header bytes 0-87), 4 zero bytes, header CRC-32C
//	  (uint32) of bytes 0-123
//	body: the buckets, in order: each the records (48 bytes: blob ID,
//	  sealed location) of the blobs whose ID's top bits are its number, by
//	  blob ID, every location of a blob in a run, its first location first
//	  and the others in the order added, then the bucket's tag (16 bytes:
//	  HMAC-SHA-256 under a key of this file of the bucket number and its
//	  records); fanout (uint32 number of the first record of each bucket,
//	  and the record count); pack IDs (32 bytes) in the order first seen;
//	  pack numbers (uint32) by pack ID; source index object IDs (32
//	  bytes), sorted.
const (
	magic      = "NGIC"
	version    = 2
	headerSize = 128
	locSize    = 16
	recordSize = id.Size + locSize
	tagSize    = 16 // a bucket's tag: HMAC-SHA-256 truncated
	macFrom    = 88 // the header bytes before the MAC, which it covers

	// A location's pack field: the pack number, the blob's type and
	// whether more locations follow, as in index.Map.
	treeBit  = 1 << 31
	moreBit  = 1 << 30
	packMask = moreBit - 1

	partBits      = 8 // the Builder sorts in 2^partBits parts
	minFanoutBits = partBits
	maxFanoutBits = 26
	bucketTarget  = 32 // blobs per fanout bucket
)

// ErrDamaged marks a file that is not a whole, intact index cache of this
// version under this key: the caller rebuilds it. Table.Err returns an
// error wrapping it when a bucket read after Open failed its tag.
var ErrDamaged = errors.New("index cache damaged or not written by this version under this key")

// ErrOtherVersion is wrapped, with ErrDamaged, by Open's error for a file
// of another format version (an older nestguard's): rebuilt as a matter
// of course, not damage.
var ErrOtherVersion = errors.New("index cache of another format version")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the fixed part of the file.
type header struct {
	blobs, more, packs, sources uint64
	bits                        uint32
	salt                        [16]byte
	keyCheck                    [16]byte
	bodyLen                     uint64
	mac                         [32]byte
}

func (h *header) encode() []byte {
	b := make([]byte, headerSize)
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[4:], version)
	binary.LittleEndian.PutUint64(b[8:], h.blobs)
	binary.LittleEndian.PutUint64(b[16:], h.more)
	binary.LittleEndian.PutUint64(b[24:], h.packs)
	binary.LittleEndian.PutUint64(b[32:], h.sources)
	binary.LittleEndian.PutUint32(b[40:], h.bits)
	copy(b[48:], h.salt[:])
	copy(b[64:], h.keyCheck[:])
	binary.LittleEndian.PutUint64(b[80:], h.bodyLen)
	copy(b[88:], h.mac[:])
	binary.LittleEndian.PutUint32(b[124:], crc32.Checksum(b[:124], castagnoli))
	return b
}

func decodeHeader(b []byte) (*header, error) {
	if len(b) < headerSize || string(b[:4]) != magic {
		return nil, fmt.Errorf("%w: bad magic", ErrDamaged)
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != version {
		return nil, fmt.Errorf("%w (%w): version %d, this nestguard writes %d", ErrOtherVersion, ErrDamaged, v, version)
	}
	if crc32.Checksum(b[:124], castagnoli) != binary.LittleEndian.Uint32(b[124:]) {
		return nil, fmt.Errorf("%w: header checksum mismatch", ErrDamaged)
	}
	h := &header{
		blobs:   binary.LittleEndian.Uint64(b[8:]),
		more:    binary.LittleEndian.Uint64(b[16:]),
		packs:   binary.LittleEndian.Uint64(b[24:]),
		sources: binary.LittleEndian.Uint64(b[32:]),
		bits:    binary.LittleEndian.Uint32(b[40:]),
		bodyLen: binary.LittleEndian.Uint64(b[80:]),
	}
	copy(h.mac[:], b[88:])
	copy(h.salt[:], b[48:])
	copy(h.keyCheck[:], b[64:])
	if h.bits < minFanoutBits || h.bits > maxFanoutBits || h.blobs > 1<<32-1 || h.packs > packMask+1 || h.more > 1<<40 || h.sources > 1<<40 {
		return nil, fmt.Errorf("%w: counts out of range", ErrDamaged)
	}
	if h.bodyLen != h.wantBodyLen() {
		return nil, fmt.Errorf("%w: body length %d does not match its counts", ErrDamaged, h.bodyLen)
	}
	return h, nil
}

func (h *header) wantBodyLen() uint64 {
	return h.bucketsLen() + (1<<h.bits+1)*4 + h.packs*(id.Size+4) + h.sources*id.Size
}

// records is the number of records: every location of every blob.
func (h *header) records() uint64 { return h.blobs + h.more }

// bucketsLen is the length of the buckets, the body's first section.
func (h *header) bucketsLen() uint64 { return h.records()*recordSize + (1<<h.bits)*tagSize }

// sealer hides locations: each 16-byte location is XORed with AES-256 of
// the salt whose last 8 bytes are XORed with the record's position (CTR
// mode with one block per record), so that the file does not show the
// sizes of the blobs, which the repository keeps sealed.
type sealer struct {
	block cipher.Block
	salt  [16]byte
}

func newSealer(key []byte, salt [16]byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("index cache key is %d bytes, want 32", len(key))
	}
	b, err := aes.NewCipher(subkey(key, "nestguard index cache locations v1"))
	if err != nil {
		return nil, err
	}
	return &sealer{block: b, salt: salt}, nil
}

// xor seals or opens the location loc of record pos in place.
func (s *sealer) xor(loc []byte, pos uint64) {
	var ctr, ks [16]byte
	ctr = s.salt
	binary.LittleEndian.PutUint64(ctr[8:], binary.LittleEndian.Uint64(s.salt[8:])^pos)
	s.block.Encrypt(ks[:], ctr[:])
	for i := range locSize {
		loc[i] ^= ks[i]
	}
}

// subkey derives the key for one use from the caller's key.
func subkey(key []byte, use string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(use))
	return m.Sum(nil)
}

// keyCheck tells a file written under key from one written under another
// before its MAC is computed, for a clearer error.
func keyCheck(key []byte) [16]byte {
	var c [16]byte
	copy(c[:], subkey(key, "nestguard index cache key check v1"))
	return c
}

// newMAC returns the MAC of a file under key: HMAC-SHA-256 of the
// sections after the buckets (fanout, packs, sources), then of the
// header's first 88 bytes. Open checks it and keeps what it covers in
// memory; the buckets carry tags of their own (newBucketMAC), checked at
// Open and at every read after it. Without the key, a file cannot be
// changed (an old file's source list made current, a blob added) without
// Open refusing it or a read failing.
func newMAC(key []byte) hash.Hash {
	return hmac.New(sha256.New, subkey(key, "nestguard index cache mac v2"))
}

// bucketKey returns the key of the bucket tags of the file with this salt:
// HMAC-SHA-256(HMAC-SHA-256(key, "nestguard index cache bucket v2"),
// salt). Each file has its own, so that no bucket of another file (an
// older cache of the same repository) passes for one of this file.
func bucketKey(key []byte, salt [16]byte) []byte {
	m := hmac.New(sha256.New, subkey(key, "nestguard index cache bucket v2"))
	m.Write(salt[:])
	return m.Sum(nil)
}

// bucketMAC computes bucket tags: the first tagSize bytes of
// HMAC-SHA-256(bucket key, bucket number (uint64) | the bucket's records).
// The fanout, which Open authenticated and keeps in memory, fixes where a
// bucket is and how many records it has; the tag fixes what they are.
type bucketMAC struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newBucketMAC(bkey []byte) *bucketMAC { return &bucketMAC{h: hmac.New(sha256.New, bkey)} }

// tag returns the tag of bucket b with records recs (valid until the next
// call).
func (m *bucketMAC) tag(b uint64, recs []byte) []byte {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], b)
	m.h.Reset()
	m.h.Write(n[:])
	m.h.Write(recs)
	return m.h.Sum(m.sum[:0])[:tagSize]
}

// loc is a plaintext location.
type loc struct {
	pack, offset, length, rawLength uint32
}

func (l loc) put(b []byte) {
	binary.LittleEndian.PutUint32(b, l.pack)
	binary.LittleEndian.PutUint32(b[4:], l.offset)
	binary.LittleEndian.PutUint32(b[8:], l.length)
	binary.LittleEndian.PutUint32(b[12:], l.rawLength)
}

func getLoc(b []byte) loc {
	return loc{
		pack:      binary.LittleEndian.Uint32(b),
		offset:    binary.LittleEndian.Uint32(b[4:]),
		length:    binary.LittleEndian.Uint32(b[8:]),
		rawLength: binary.LittleEndian.Uint32(b[12:]),
	}
}

func bucketOf(bid []byte, bits uint32) uint64 {
	return binary.BigEndian.Uint64(bid[:8]) >> (64 - bits)
}

func blobType(pack uint32) index.BlobType {
	if pack&treeBit != 0 {
		return index.TreeBlob
	}
	return index.DataBlob
}
