// Package pack defines the pack file: many sealed blobs followed by a sealed
// header that lists them, so that one storage object holds tens of MiB and a
// single blob can still be read with one ranged request.
//
// Layout (see docs/format.md):
//
//	blob_0 ... blob_n-1  sealed header  header length (uint32 LE)  "NGP1"
//
// The header plaintext is: "NGPH", version byte, blob count (uint32 LE), then
// per blob: type (1 byte), sealed length (uint32 LE), raw length (uint32 LE),
// id (32 bytes). Offsets are implicit: blob i starts where blob i-1 ends.
package pack

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nestguard/nestguard/internal/id"
)

// Magic values that frame a pack and its header.
const (
	trailerMagic = "NGP1"
	headerMagic  = "NGPH"
	version      = 1

	// TrailerSize is the fixed size of the pack's last bytes.
	TrailerSize = 8
	entrySize   = 1 + 4 + 4 + id.Size
	headerFixed = len(headerMagic) + 1 + 4

	// maxType is the largest blob type (index.TreeBlob).
	maxType = 1

	// MaxBlobs bounds the blobs in one pack so a corrupt count cannot make
	// a reader allocate without limit.
	MaxBlobs = 1 << 20
)

// Blob describes one blob stored in a pack.
type Blob struct {
	Type      uint8 // index.BlobType; kept as a byte to avoid an import cycle
	ID        id.ID
	Offset    uint32 // of the sealed blob
	Length    uint32 // sealed length
	RawLength uint32 // plaintext length
}

// EncodeHeader returns the header plaintext for blobs, which must be in pack
// order with contiguous offsets starting at 0.
func EncodeHeader(blobs []Blob) []byte {
	b := make([]byte, 0, headerFixed+len(blobs)*entrySize)
	b = append(b, headerMagic...)
	b = append(b, version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(blobs)))
	for _, bl := range blobs {
		b = append(b, bl.Type)
		b = binary.LittleEndian.AppendUint32(b, bl.Length)
		b = binary.LittleEndian.AppendUint32(b, bl.RawLength)
		b = append(b, bl.ID[:]...)
	}
	return b
}

// DecodeHeader parses a header plaintext. It never panics and bounds every
// allocation by the input size.
func DecodeHeader(b []byte) ([]Blob, error) {
	if len(b) < headerFixed {
		return nil, fmt.Errorf("pack header: %d bytes is too short", len(b))
	}
	if string(b[:4]) != headerMagic {
		return nil, errors.New("pack header: bad magic")
	}
	if b[4] != version {
		return nil, fmt.Errorf("pack header: unsupported version %d (this nestguard reads %d)", b[4], version)
	}
	n := binary.LittleEndian.Uint32(b[5:9])
	rest := b[headerFixed:]
	if n > MaxBlobs || uint64(len(rest)) != uint64(n)*entrySize {
		return nil, fmt.Errorf("pack header: %d entries do not fit %d bytes", n, len(rest))
	}
	blobs := make([]Blob, n)
	var off uint64
	for i := range blobs {
		e := rest[i*entrySize : (i+1)*entrySize]
		bl := &blobs[i]
		bl.Type = e[0]
		if bl.Type > maxType {
			return nil, fmt.Errorf("pack header: blob %d has unknown type %d", i, bl.Type)
		}
		bl.Length = binary.LittleEndian.Uint32(e[1:5])
		bl.RawLength = binary.LittleEndian.Uint32(e[5:9])
		copy(bl.ID[:], e[9:])
		if off+uint64(bl.Length) > 1<<32-1 {
			return nil, errors.New("pack header: blob offsets overflow 4 GiB")
		}
		bl.Offset = uint32(off)
		off += uint64(bl.Length)
	}
	return blobs, nil
}

// Trailer returns the fixed trailer that follows a sealed header of n bytes.
func Trailer(sealedHeaderLen int) []byte {
	b := binary.LittleEndian.AppendUint32(make([]byte, 0, TrailerSize), uint32(sealedHeaderLen))
	return append(b, trailerMagic...)
}

// ParseTrailer returns the sealed header length from a pack's last
// TrailerSize bytes, checking it against the pack size.
func ParseTrailer(t []byte, packSize int64) (int, error) {
	if len(t) != TrailerSize {
		return 0, fmt.Errorf("pack trailer: want %d bytes, got %d", TrailerSize, len(t))
	}
	if string(t[4:]) != trailerMagic {
		return 0, errors.New("pack trailer: bad magic (truncated or not a pack)")
	}
	n := int64(binary.LittleEndian.Uint32(t[:4]))
	if n <= 0 || n > packSize-TrailerSize {
		return 0, fmt.Errorf("pack trailer: header length %d does not fit pack size %d", n, packSize)
	}
	return int(n), nil
}

// Check verifies that blobs, as decoded from a header, exactly fill the
// space before a sealed header of hdrLen in a pack of packSize bytes.
func Check(blobs []Blob, hdrLen int, packSize int64) error {
	var end int64
	if len(blobs) > 0 {
		last := blobs[len(blobs)-1]
		end = int64(last.Offset) + int64(last.Length)
	}
	if end+int64(hdrLen)+TrailerSize != packSize {
		return fmt.Errorf("pack: blobs end at %d, header of %d bytes, but pack has %d bytes", end, hdrLen, packSize)
	}
	return nil
}
