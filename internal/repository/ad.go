package repository

import (
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// Associated data binds every sealed thing to what it is stored as, so
// that one sealed thing cannot be passed off as another: a data blob
// whose plaintext an attacker chose (any file that gets backed up) does not
// open as a snapshot, hold or index object, a tree, a pack header or the
// config, wherever it is copied. Each is
//
//	"nestguard v2" 0x00 kind [0x00 what]
//
// (docs/format.md, "Associated data"). It is authenticated, never stored.
const adPrefix = "nestguard v2\x00"

// adConfig is the associated data of the config object.
func adConfig() []byte { return []byte(adPrefix + "config") }

// adPackHeader is the associated data of a pack's header: it binds the
// header to the object hash (SHA-256 or BLAKE3) of the pack's bytes
// before it (the sealed blobs), so a header copied behind other bytes
// does not open.
func adPackHeader(bodyHash []byte) []byte {
	return append([]byte(adPrefix+"pack header\x00"), bodyHash...)
}

// adObject is the associated data of an object of type t stored under the
// hash of its bytes (snapshots, index, holds).
func adObject(t backend.FileType) []byte { return []byte(adPrefix + "object\x00" + string(t)) }

// adNamed is the associated data of named object t/name (WAL).
func adNamed(t backend.FileType, name string) []byte {
	return []byte(adPrefix + "named\x00" + string(t) + "\x00" + name)
}

// adBlobSize is the length of a blob's associated data.
const adBlobSize = len(adPrefix) + len("blob\x00") + 1 + len(id.ID{})

// adBlob writes the associated data of blob bid of type t into b: the
// prefix, "blob", the type byte as pack headers store it, and the blob id.
func adBlob(b *[adBlobSize]byte, t index.BlobType, bid id.ID) []byte {
	n := copy(b[:], adPrefix+"blob\x00")
	b[n] = byte(t)
	copy(b[n+1:], bid[:])
	return b[:]
}
