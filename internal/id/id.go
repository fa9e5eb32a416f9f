// Package id defines the 256-bit identifiers that name everything stored in
// a nestguard repository: blobs (keyed hash of the plaintext) and storage
// objects (a plain hash of the stored bytes: SHA-256 or BLAKE3, as the
// repository's config says).
package id

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"

	"github.com/nestguard/nestguard/internal/blake3"
)

// Size is the length of an ID in bytes.
const Size = 32

// ID names a blob or a stored object.
type ID [Size]byte

// Null is the zero ID; it names nothing.
var Null ID

// Hash returns the SHA-256 of data as an ID: the name of a key slot (read
// before the config says which Hasher names the other objects), and of
// every object of a repository whose Hasher is SHA256.
func Hash(data []byte) ID { return sha256.Sum256(data) }

// The object name hashes, as a repository's config records them.
const (
	SHA256 = "SHA-256"
	BLAKE3 = "BLAKE3"
)

// Hasher names stored objects by a plain (unkeyed) hash of their bytes,
// so that anyone can check a name without the repository's key
// (sha256sum, b3sum). The zero Hasher is SHA256's.
type Hasher struct{ blake3 bool }

// NewHasher returns the Hasher a config names: SHA256 or BLAKE3.
func NewHasher(name string) (Hasher, error) {
	switch name {
	case SHA256:
		return Hasher{}, nil
	case BLAKE3:
		return Hasher{blake3: true}, nil
	}
	return Hasher{}, fmt.Errorf("object id algorithm %q is not one this nestguard knows (%s or %s): upgrade nestguard", name, SHA256, BLAKE3)
}

// Sum returns the object name of data.
func (h Hasher) Sum(data []byte) ID {
	if h.blake3 {
		return blake3.Sum256(data)
	}
	return sha256.Sum256(data)
}

// New returns a streaming hash whose Sum is the object name of what was
// written. Its Sum does not change its state, so a writer can take the
// hash of a prefix and go on.
func (h Hasher) New() hash.Hash {
	if h.blake3 {
		return blake3.New()
	}
	return sha256.New()
}

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
