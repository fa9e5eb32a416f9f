package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/fips140"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// Seal suites, by the names a repository config records as its encryption
// algorithm. A key seals with one suite for its whole life.
const (
	// SuiteXAES is XAES-256-GCM (xaes.go), the default.
	SuiteXAES = "XAES-256-GCM"
	// SuiteFIPS is AES-256-GCM under a per-message key derived with
	// HKDF-SHA-256 from a random salt, with a random 96-bit GCM nonce
	// (cipher.NewGCMWithRandomNonce): every step is a FIPS 140-3 approved
	// service of Go's cryptographic module, also under
	// GODEBUG=fips140=only, which refuses XAES's caller-chosen GCM nonces.
	SuiteFIPS = "AES-256-GCM-HKDF-SHA-256"
)

// ErrNotApproved is wrapped by the errors of operations refused because
// the process runs with GODEBUG=fips140=only and the operation would use
// a primitive that is not FIPS 140-3 approved in Go's module.
var ErrNotApproved = errors.New("not FIPS 140-3 approved")

// suite seals and opens under one key. Implementations are safe for
// concurrent use.
type suite interface {
	// sealRandom appends salt-or-nonce || ciphertext || tag to dst.
	sealRandom(dst, plaintext, ad []byte) []byte
	// sealInPlace seals buf[prefix():] in place (see Key.SealInPlace).
	sealInPlace(buf, ad []byte) []byte
	open(dst, sealed, ad []byte) ([]byte, error)
	// openInPlace returns the plaintext as a subslice of sealed.
	openInPlace(sealed, ad []byte) ([]byte, error)
	// prefix is the room sealInPlace needs before the plaintext.
	prefix() int
	// overhead is how many bytes sealing adds.
	overhead() int
	// zero clears the key material the suite holds in memory of its own;
	// it must not be used afterwards.
	zero()
}

// newSuite returns the suite named name under key (keySize bytes).
func newSuite(name string, key []byte) (suite, error) {
	switch name {
	case SuiteXAES:
		if fips140.Enforced() {
			return nil, fmt.Errorf("%s is %w: its AES-256-GCM takes caller-chosen nonces, which GODEBUG=fips140=only refuses; only a repository created with 'nestguard init --fips' (%s) can be used in this mode", SuiteXAES, ErrNotApproved, SuiteFIPS)
		}
		return newXAES(key)
	case SuiteFIPS:
		return newHKDFGCM(key)
	}
	return nil, fmt.Errorf("unknown encryption algorithm %q (this nestguard knows %s and %s): upgrade nestguard", name, SuiteXAES, SuiteFIPS)
}

// checkSuite says whether name is a suite this build implements and this
// process may use.
func checkSuite(name string) error {
	_, err := newSuite(name, make([]byte, keySize))
	return err
}

// overheadOf is the overhead of the suite name, which must be known.
func overheadOf(name string) int {
	if name == SuiteFIPS {
		return hgOverhead
	}
	return Overhead
}

func (x *xaes) prefix() int   { return nonceSize }
func (x *xaes) overhead() int { return Overhead }

// The layout of an AES-256-GCM-HKDF-SHA-256 sealed message:
//
//	salt (24 bytes) || GCM nonce (12 bytes) || ciphertext || tag (16 bytes)
//
// The message key is HKDF-SHA-256(input key, salt, info infoSeal), 32
// bytes; GCM's nonce is random too. Each key seals one message, so GCM's
// limit of 2^32 random nonces per key never binds, and two messages share
// a key only if their 192-bit salts collide (probability about n^2/2^193
// for n messages: 2^-113 at 2^40 messages), and even then their nonces
// must collide as well for any harm.
const (
	hgSaltSize  = 24
	hgNonceSize = 12
	hgOverhead  = hgSaltSize + hgNonceSize + tagSize
	infoSeal    = "nestguard seal aes-256-gcm v1"
)

// hkdfGCM is SuiteFIPS under one input key. It only reads its key, so it
// is safe for concurrent use.
type hkdfGCM struct {
	key [keySize]byte
}

func newHKDFGCM(key []byte) (*hkdfGCM, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("%s key is %d bytes, want %d", SuiteFIPS, len(key), keySize)
	}
	h := &hkdfGCM{}
	copy(h.key[:], key)
	return h, nil
}

// zero clears the input key. The message keys are zeroed after each
// use; their AES key schedules, inside crypto/aes, cannot be.
func (h *hkdfGCM) zero() { clear(h.key[:]) }

func (h *hkdfGCM) prefix() int   { return hgSaltSize }
func (h *hkdfGCM) overhead() int { return hgOverhead }

// aead returns AES-256-GCM with random nonces under the message key of salt.
func (h *hkdfGCM) aead(salt []byte) (cipher.AEAD, error) {
	mk, err := hkdf.Key(sha256.New, h.key[:], salt, infoSeal, keySize)
	if err != nil {
		return nil, err
	}
	defer clear(mk)
	block, err := aes.NewCipher(mk)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// mustAEAD is aead for sealing, where a failure is a bug: every input has
// a valid length.
func (h *hkdfGCM) mustAEAD(salt []byte) cipher.AEAD {
	a, err := h.aead(salt)
	if err != nil {
		panic("crypto: " + SuiteFIPS + " key derivation: " + err.Error())
	}
	return a
}

func (h *hkdfGCM) sealRandom(dst, plaintext, ad []byte) []byte {
	var salt [hgSaltSize]byte
	// crypto/rand.Read never returns an error: it crashes the program if
	// the system's generator fails.
	rand.Read(salt[:])
	dst = append(dst, salt[:]...)
	return h.mustAEAD(salt[:]).Seal(dst, nil, plaintext, ad)
}

// sealInPlace seals buf[hgSaltSize:] under a salt written to buf[:hgSaltSize].
// GCM with random nonces moves the plaintext up by the nonce's 12 bytes
// when its output starts where its input does, then seals in place.
func (h *hkdfGCM) sealInPlace(buf, ad []byte) []byte {
	buf = slices.Grow(buf, hgNonceSize+tagSize)
	salt := buf[:hgSaltSize]
	rand.Read(salt)
	pt := buf[hgSaltSize:]
	out := h.mustAEAD(salt).Seal(pt[:0], nil, pt, ad)
	return buf[:hgSaltSize+len(out)]
}

func (h *hkdfGCM) open(dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < hgOverhead {
		return nil, fmt.Errorf("%w: sealed data is %d bytes, shorter than the %d byte minimum", ErrAuth, len(sealed), hgOverhead)
	}
	a, err := h.aead(sealed[:hgSaltSize])
	if err != nil {
		return nil, err
	}
	out, err := a.Open(dst, nil, sealed[hgSaltSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: the data was modified, truncated, sealed under another key or is not what it is stored as", ErrAuth)
	}
	return out, nil
}

// openInPlace writes the plaintext from sealed[hgSaltSize:] on (GCM with
// random nonces moves the ciphertext down over its nonce first).
func (h *hkdfGCM) openInPlace(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < hgSaltSize {
		return h.open(nil, sealed, ad) // too short: open says so
	}
	return h.open(sealed[hgSaltSize:hgSaltSize], sealed, ad)
}
