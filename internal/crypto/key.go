package crypto

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash"
)

// HKDF-SHA-256 info strings, one per subkey. Changing one changes every
// repository's format.
const (
	infoEncryption = "nestguard encryption v1"
	infoBlobID     = "nestguard blob id v1"
	infoChunker    = "nestguard chunker v1"
)

// Key is a repository master key and the subkeys derived from it. It is safe
// for concurrent use. A Key must not be copied after first use.
type Key struct {
	master  [keySize]byte
	enc     *xaes // XAES-256-GCM under the encryption subkey
	idKey   []byte
	chunker [32]byte
	hmacID  *pooledHash // HMAC-SHA-256 under idKey, the default blob ID
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

// Seal encrypts and authenticates plaintext with XAES-256-GCM under a fresh
// random nonce, binding it to ad (associated data: authenticated, not
// stored), appends nonce || ciphertext || tag (len(plaintext)+Overhead
// bytes) to dst and returns the result. The remaining capacity of dst must
// not overlap plaintext.
func (k *Key) Seal(dst, plaintext, ad []byte) []byte {
	return k.enc.sealRandom(dst, plaintext, ad)
}

// Open authenticates and decrypts sealed, the output of Seal with the same
// ad, and appends the plaintext to dst. Any modification, truncation, a
// different key or different associated data makes it fail with an error
// wrapping ErrAuth. The remaining capacity of dst must not overlap sealed.
func (k *Key) Open(dst, sealed, ad []byte) ([]byte, error) {
	return k.enc.open(dst, sealed, ad)
}

// SealPrefix is the room SealInPlace needs before the plaintext.
const SealPrefix = nonceSize

// SealInPlace is Seal without a second buffer: buf holds SealPrefix bytes
// of room followed by the plaintext, and is returned holding
// nonce || ciphertext || tag in the same memory (grown only when its
// capacity lacks room for the tag). A backup seals every chunk, and a
// second chunk-sized buffer per worker is memory for nothing.
func (k *Key) SealInPlace(buf, ad []byte) []byte {
	if len(buf) < SealPrefix {
		panic("crypto: SealInPlace without room for the nonce")
	}
	return k.enc.sealInPlace(buf, ad)
}

// OpenInPlace is Open that decrypts into sealed's own memory and returns
// the plaintext as a subslice of it; sealed is overwritten either way.
func (k *Key) OpenInPlace(sealed, ad []byte) ([]byte, error) {
	return k.enc.openInPlace(sealed, ad)
}

// ChunkerSeed returns the key-derived seed of the chunker's gear table, so
// that chunk boundaries differ between repositories.
func (k *Key) ChunkerSeed() [32]byte { return k.chunker }
