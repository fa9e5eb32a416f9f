// Package index records where every blob of a repository is stored: the
// index objects written to the repository (File, Encode, Decode) and the
// compact in-memory map built from them (Map).
package index

import (
	"fmt"

	"github.com/nestguard/nestguard/internal/id"
)

// BlobType tells file content from directory listings.
type BlobType uint8

// The blob types; their values are stored in pack headers and index objects.
const (
	DataBlob BlobType = 0
	TreeBlob BlobType = 1
)

// String returns "data" or "tree".
func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("BlobType(%d)", uint8(t))
}

// Entry locates one blob.
type Entry struct {
	ID        id.ID
	Type      BlobType
	Pack      id.ID
	Offset    uint32 // of the sealed blob in the pack
	Length    uint32 // sealed length
	RawLength uint32 // plaintext length
}
