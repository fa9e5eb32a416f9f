// Package id defines the 256-bit identifiers that name everything stored in
// a nestguard repository: blobs (keyed hash of the plaintext) and storage
// objects (SHA-256 of the stored bytes).
package id

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Size is the length of an ID in bytes.
const Size = 32

// ID names a blob or a stored object.
type ID [Size]byte

// Null is the zero ID; it names nothing.
var Null ID

// Hash returns the SHA-256 of data as an ID. It is used for storage object
// names, which anyone may verify without the repository key.
func Hash(data []byte) ID { return sha256.Sum256(data) }

// String returns the full lowercase hex form.
func (i ID) String() string { return hex.EncodeToString(i[:]) }

// Short returns the first 8 hex digits, the form shown to users.
func (i ID) Short() string { return hex.EncodeToString(i[:4]) }

// IsNull reports whether i is the zero ID.
func (i ID) IsNull() bool { return i == Null }

// MarshalText implements encoding.TextMarshaler so IDs appear as hex in JSON.
func (i ID) MarshalText() ([]byte, error) { return []byte(i.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (i *ID) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*i = p
	return nil
}

// Parse decodes a full 64-digit hex ID.
func Parse(s string) (ID, error) {
	var i ID
	if len(s) != 2*Size {
		return i, fmt.Errorf("invalid id %q: want %d hex digits, got %d", s, 2*Size, len(s))
	}
	if _, err := hex.Decode(i[:], []byte(s)); err != nil {
		return i, fmt.Errorf("invalid id %q: %w", s, err)
	}
	return i, nil
}
