package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nestguard/nestguard/internal/id"
)

// PackBlobs lists the blobs stored in one pack. The Pack field of Blobs is
// not stored in index objects; Decode sets it to Pack.
type PackBlobs struct {
	Pack  id.ID
	Blobs []Entry
}

// File is the content of one index object.
type File struct {
	Packs []PackBlobs
}

// Layout of an index object's plaintext (see docs/format.md).
const (
	fileMagic   = "NGIX"
	fileVersion = 1
	fileHeader  = len(fileMagic) + 1 + 4 // magic, version, pack count
	packHeader  = id.Size + 4            // pack ID, blob count
	blobSize    = 1 + id.Size + 3*4      // type, ID, offset, length, raw length
)

// Encode returns the plaintext of an index object listing f.
func Encode(f *File) []byte {
	n := fileHeader
	for _, p := range f.Packs {
		n += packHeader + len(p.Blobs)*blobSize
	}
	b := make([]byte, 0, n)
	b = append(b, fileMagic...)
	b = append(b, fileVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Packs)))
	for _, p := range f.Packs {
		b = append(b, p.Pack[:]...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Blobs)))
		for _, e := range p.Blobs {
			b = append(b, byte(e.Type))
			b = append(b, e.ID[:]...)
			b = binary.LittleEndian.AppendUint32(b, e.Offset)
			b = binary.LittleEndian.AppendUint32(b, e.Length)
			b = binary.LittleEndian.AppendUint32(b, e.RawLength)
		}
	}
	return b
}

// Decode parses the plaintext of an index object. Index objects are
// untrusted input: Decode never panics, checks every count against the bytes
// that remain before allocating for it, and rejects unknown versions, unknown
// blob types and trailing bytes.
func Decode(b []byte) (*File, error) {
	if len(b) < fileHeader {
		return nil, fmt.Errorf("index object: %d bytes is too short for the %d-byte header", len(b), fileHeader)
	}
	if string(b[:len(fileMagic)]) != fileMagic {
		return nil, errors.New("index object: bad magic (not an index object)")
	}
	if v := b[len(fileMagic)]; v != fileVersion {
		return nil, fmt.Errorf("index object: unsupported version %d (this nestguard reads %d): upgrade nestguard", v, fileVersion)
	}
	nPacks := binary.LittleEndian.Uint32(b[len(fileMagic)+1:])
	rest := b[fileHeader:]
	if uint64(nPacks) > uint64(len(rest)/packHeader) {
		return nil, fmt.Errorf("index object: %d packs cannot fit in %d bytes", nPacks, len(rest))
	}
	f := &File{Packs: make([]PackBlobs, nPacks)}
	for i := range f.Packs {
		p := &f.Packs[i]
		if len(rest) < packHeader {
			return nil, fmt.Errorf("index object: truncated in pack %d of %d", i, nPacks)
		}
		p.Pack = id.ID(rest[:id.Size])
		nBlobs := binary.LittleEndian.Uint32(rest[id.Size:])
		rest = rest[packHeader:]
		if uint64(nBlobs) > uint64(len(rest)/blobSize) {
			return nil, fmt.Errorf("index object: pack %s: %d blobs cannot fit in %d bytes", p.Pack.Short(), nBlobs, len(rest))
		}
		if nBlobs > 0 {
			p.Blobs = make([]Entry, nBlobs)
		}
		for j := range p.Blobs {
			e := &p.Blobs[j]
			t := BlobType(rest[0])
			if t != DataBlob && t != TreeBlob {
				return nil, fmt.Errorf("index object: pack %s blob %d: unknown blob type %d", p.Pack.Short(), j, t)
			}
			e.Type = t
			e.ID = id.ID(rest[1 : 1+id.Size])
			e.Pack = p.Pack
			e.Offset = binary.LittleEndian.Uint32(rest[1+id.Size:])
			e.Length = binary.LittleEndian.Uint32(rest[1+id.Size+4:])
			e.RawLength = binary.LittleEndian.Uint32(rest[1+id.Size+8:])
			rest = rest[blobSize:]
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("index object: %d unexpected bytes after the last pack", len(rest))
	}
	return f, nil
}
