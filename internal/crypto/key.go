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
	// infoEncryptionFIPS derives the input key of SuiteFIPS: never the
	// same key as XAES's.
	infoEncryptionFIPS = "nestguard encryption aes-256-gcm-hkdf-sha-256 v1"
	infoBlobID         = "nestguard blob id v1"
	infoChunker        = "nestguard chunker v1"
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
	suite   string // SuiteXAES or SuiteFIPS
	enc     suite  // the seal suite under the encryption subkey
	idKey   []byte
	chunker [32]byte
	hmacID  *pooledHash // HMAC-SHA-256 under idKey, the default blob ID

	mu      sync.Mutex
	blobIDs []*pooledHash // made by BlobIDFunc, closed with the Key
}

// NewKey returns a fresh random master key that seals with XAES-256-GCM.
func NewKey() (*Key, error) { return NewKeyFor(SuiteXAES) }

// NewKeyFor returns a fresh random master key that seals with the suite
// named (SuiteXAES or SuiteFIPS).
func NewKeyFor(suite string) (*Key, error) {
	var master [keySize]byte
	if _, err := rand.Read(master[:]); err != nil {
		return nil, fmt.Errorf("generating master key: %w", err)
	}
	defer clear(master[:])
	return newKey(master[:], suite)
}

// newKey derives the subkeys of master, which must be keySize bytes.
func newKey(master []byte, suite string) (*Key, error) {
	if len(master) != keySize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(master), keySize)
	}
	k := &Key{suite: suite}
	copy(k.master[:], master)
	info := infoEncryption
	if suite == SuiteFIPS {
		info = infoEncryptionFIPS
	}
	encKey, err := hkdf.Key(sha256.New, master, nil, info, keySize)
	if err != nil {
		return nil, fmt.Errorf("deriving encryption key: %w", err)
	}
	defer clear(encKey)
	if k.enc, err = newSuite(suite, encKey); err != nil {
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
// master key, the blob ID key, the chunker seed and the encryption key's
// own memory (XAES's CMAC subkey, or SuiteFIPS's input key); it drops the AES key schedule and the keyed hash states,
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

// Suite is the name of the seal suite the key uses (SuiteXAES or SuiteFIPS).
func (k *Key) Suite() string { return k.suite }

// Seal encrypts and authenticates plaintext with the key's suite under a
// fresh random nonce (and, for SuiteFIPS, salt), binding it to ad
// (associated data: authenticated, not stored), appends the sealed message
// (len(plaintext)+k.Overhead() bytes: XAES-256-GCM's nonce || ciphertext ||
// tag, or SuiteFIPS's salt || nonce || ciphertext || tag) to dst and
// returns the result. The remaining capacity of dst must not overlap
// plaintext. It fails only on a closed Key (ErrClosed).
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

// Overhead is the number of bytes Seal adds to a plaintext.
func (k *Key) Overhead() int { return k.enc.overhead() }

// SealPrefix is the room SealInPlace needs before the plaintext.
func (k *Key) SealPrefix() int { return k.enc.prefix() }

// SealInPlace is Seal without a second buffer: buf holds k.SealPrefix()
// bytes of room followed by the plaintext, and is returned holding the
// sealed message in the same memory (grown only when its capacity lacks
// room for the rest). A backup seals every chunk, and a second chunk-sized
// buffer per worker is memory for nothing. It fails only on a closed Key
// (ErrClosed).
func (k *Key) SealInPlace(buf, ad []byte) ([]byte, error) {
	if len(buf) < k.enc.prefix() {
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

// infoAudit derives the master key of the audit trail's Key (Subkey).
const infoAudit = "nestguard audit v1"

// AuditKey returns a new Key whose master key is HKDF-SHA-256(master,
// "nestguard audit v1"), with k's suite: the audit trail seals its records
// and its signing key with it (docs/format.md, "Audit trail"). It lives on
// after k is closed, so a command's audit record can be written once the
// command has closed its repository; the caller closes it.
func (k *Key) AuditKey() (*Key, error) {
	if k.closed.Load() {
		return nil, ErrClosed
	}
	m, err := hkdf.Key(sha256.New, k.master[:], nil, infoAudit, keySize)
	if err != nil {
		return nil, fmt.Errorf("deriving audit key: %w", err)
	}
	defer clear(m)
	return newKey(m, k.suite)
}

// infoIndexCache derives the key of the local index cache.
const infoIndexCache = "nestguard index cache v1"

// IndexCacheKey returns HKDF-SHA-256(master, "nestguard index cache v1"),
// 32 bytes: the key under which the local index cache seals the blob
// locations it holds (internal/index/diskidx). The caller clears it.
func (k *Key) IndexCacheKey() ([]byte, error) {
	if k.closed.Load() {
		return nil, ErrClosed
	}
	b, err := hkdf.Key(sha256.New, k.master[:], nil, infoIndexCache, keySize)
	if err != nil {
		return nil, fmt.Errorf("deriving index cache key: %w", err)
	}
	return b, nil
}
