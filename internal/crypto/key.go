package crypto

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"
)

// HKDF-SHA-256 info strings, one per subkey. Changing one changes every
// repository's format.
const (
	infoEncryption = "nestguard encryption v1"
	infoBlobID     = "nestguard blob id v1"
	infoChunker    = "nestguard chunker v1"
)

// ErrClosed is returned by Seal, Open and their in-place forms, and by
// BlobIDFunc, on a Key after Close.
var ErrClosed = errors.New("the repository key was closed (its memory zeroed): the repository must be opened again")

// Key is a repository master key and the subkeys derived from it. It is safe
// for concurrent use, except Close. A Key must not be copied after first
// use.
type Key struct {
	closed  atomic.Bool
	master  [keySize]byte
	enc     *xaes // XAES-256-GCM under the encryption subkey
	idKey   []byte
	chunker [32]byte
	hmacID  *pooledHash // HMAC-SHA-256 under idKey, the default blob ID

	mu      sync.Mutex
	blobIDs []*pooledHash // made by BlobIDFunc, closed with the Key
}

// NewKey returns a fresh random master key.
func NewKey() (*Key, error) {
	var master [keySize]byte
	if _, err := rand.Read(master[:]); err != nil {
		return nil, fmt.Errorf("generating master key: %w", err)
	}
	defer clear(master[:])
	return newKey(master[:])
}

// newKey derives the subkeys of master, which must be keySize bytes.
func newKey(master []byte) (*Key, error) {
	if len(master) != keySize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(master), keySize)
	}
	k := &Key{}
	copy(k.master[:], master)
	encKey, err := hkdf.Key(sha256.New, master, nil, infoEncryption, keySize)
	if err != nil {
		return nil, fmt.Errorf("deriving encryption key: %w", err)
	}
	defer clear(encKey)
	if k.enc, err = newXAES(encKey); err != nil {
		return nil, err
	}
	if k.idKey, err = hkdf.Key(sha256.New, master, nil, infoBlobID, keySize); err != nil {
		return nil, fmt.Errorf("deriving blob id key: %w", err)
	}
	seed, err := hkdf.Key(sha256.New, master, nil, infoChunker, len(k.chunker))
	if err != nil {
		return nil, fmt.Errorf("deriving chunker seed: %w", err)
	}
	copy(k.chunker[:], seed)
	clear(seed)
	k.hmacID = newPooledHash(func() hash.Hash { return hmac.New(sha256.New, k.idKey) })
	return k, nil
}

// Close zeroes the key material the Key holds in memory of its own: the
// master key, the blob ID key, the chunker seed and the CMAC subkey of the
// encryption key; it drops the AES key schedule and the keyed hash states,
// which live inside the standard library's types and cannot be zeroed
// (docs/security.md says exactly what is and is not). Afterwards Seal,
// Open and BlobIDFunc fail with ErrClosed, and a BlobIDFunc or BlobID
// obtained before returns the zero ID. Close must not run concurrently
// with other methods; closing twice is harmless.
func (k *Key) Close() {
	if k.closed.Swap(true) {
		return
	}
	clear(k.master[:])
	clear(k.idKey)
	clear(k.chunker[:])
	if k.enc != nil {
		k.enc.zero()
	}
	if k.hmacID != nil {
		k.hmacID.close()
	}
	k.mu.Lock()
	for _, h := range k.blobIDs {
		h.close()
	}
	k.blobIDs = nil
	k.mu.Unlock()
}

// Closed reports whether Close was called.
func (k *Key) Closed() bool { return k.closed.Load() }

// Seal encrypts and authenticates plaintext with XAES-256-GCM under a fresh
// random nonce, binding it to ad (associated data: authenticated, not
// stored), appends nonce || ciphertext || tag (len(plaintext)+Overhead
// bytes) to dst and returns the result. The remaining capacity of dst must
// not overlap plaintext. It fails only on a closed Key (ErrClosed).
func (k *Key) Seal(dst, plaintext, ad []byte) ([]byte, error) {
	if k.closed.Load() {
		return dst, ErrClosed
	}
	return k.enc.sealRandom(dst, plaintext, ad), nil
}

// Open authenticates and decrypts sealed, the output of Seal with the same
// ad, and appends the plaintext to dst. Any modification, truncation, a
// different key or different associated data makes it fail with an error
// wrapping ErrAuth. The remaining capacity of dst must not overlap sealed.
func (k *Key) Open(dst, sealed, ad []byte) ([]byte, error) {
	if k.closed.Load() {
		return nil, ErrClosed
	}
	return k.enc.open(dst, sealed, ad)
}

// SealPrefix is the room SealInPlace needs before the plaintext.
const SealPrefix = nonceSize

// SealInPlace is Seal without a second buffer: buf holds SealPrefix bytes
// of room followed by the plaintext, and is returned holding
// nonce || ciphertext || tag in the same memory (grown only when its
// capacity lacks room for the tag). A backup seals every chunk, and a
// second chunk-sized buffer per worker is memory for nothing. It fails
// only on a closed Key (ErrClosed).
func (k *Key) SealInPlace(buf, ad []byte) ([]byte, error) {
	if len(buf) < SealPrefix {
		panic("crypto: SealInPlace without room for the nonce")
	}
	if k.closed.Load() {
		return nil, ErrClosed
	}
	return k.enc.sealInPlace(buf, ad), nil
}

// OpenInPlace is Open that decrypts into sealed's own memory and returns
// the plaintext as a subslice of it; sealed is overwritten either way.
func (k *Key) OpenInPlace(sealed, ad []byte) ([]byte, error) {
	if k.closed.Load() {
		return nil, ErrClosed
	}
	return k.enc.openInPlace(sealed, ad)
}

// ChunkerSeed returns the key-derived seed of the chunker's gear table, so
// that chunk boundaries differ between repositories.
func (k *Key) ChunkerSeed() [32]byte { return k.chunker }
