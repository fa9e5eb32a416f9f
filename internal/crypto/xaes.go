package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"slices"
)

// XAES-256-GCM (c2sp.org/XAES-256-GCM) extends AES-256-GCM to a 192-bit
// nonce. Random 96-bit GCM nonces are only safe for 2^32 messages per key, and
// a large repository seals more blobs than that; with 192-bit nonces random
// nonces are safe for 2^80 messages. It uses FIPS 140-3 approved primitives
// only: a NIST SP 800-108r1 counter-mode KDF with AES-256-CMAC derives a
// per-message key from the first 12 nonce bytes, and AES-256-GCM encrypts
// under that key with the last 12 nonce bytes.
const (
	nonceSize = 24
	tagSize   = 16
	keySize   = 32

	// Overhead is the number of bytes Seal adds to a plaintext: the nonce
	// before the ciphertext and the GCM tag after it.
	Overhead = nonceSize + tagSize
)

// xaes is an XAES-256-GCM key. It is safe for concurrent use: it only holds
// the expanded AES key and the CMAC subkey, both read-only.
type xaes struct {
	block cipher.Block // AES-256 under the input key K
	k1    [aes.BlockSize]byte
}

func newXAES(key []byte) (*xaes, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("XAES-256-GCM key is %d bytes, want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	x := &xaes{block: block}
	// CMAC subkey K1 (NIST SP 800-38B, 6.1): L = AES_K(0^128), K1 = L<<1,
	// reduced by the polynomial 0x87 if the top bit of L was set. Only K1 is
	// needed because the CMAC input is always exactly one complete block.
	var l [aes.BlockSize]byte
	block.Encrypt(l[:], l[:])
	msb := l[0] >> 7
	for i := 0; i < len(l)-1; i++ {
		x.k1[i] = l[i]<<1 | l[i+1]>>7
	}
	// Constant time: L is secret, so no branch on its top bit.
	x.k1[len(l)-1] = l[len(l)-1]<<1 ^ 0x87&-msb
	clear(l[:])
	return x, nil
}

// zero clears the CMAC subkey and drops the AES block: its expanded key
// schedule is inside crypto/aes, which offers no way to clear it, and is
// left to the garbage collector. The xaes must not be used afterwards.
func (x *xaes) zero() {
	clear(x.k1[:])
	x.block = nil
}

// deriveKey sets kx to the per-message key for nonce[:12]: the NIST SP
// 800-108r1 counter-mode KDF with PRF AES-256-CMAC, Label "X", Context
// nonce[:12], a 16-bit counter i = 1, 2 and no L field:
//
//	Kx = CMAC_K(i=1 || "X" || 0x00 || N[:12]) || CMAC_K(i=2 || "X" || 0x00 || N[:12])
//
// Each CMAC input is one complete block, so CMAC_K(M) is AES_K(M xor K1).
func (x *xaes) deriveKey(kx *[keySize]byte, nonce []byte) {
	var m [keySize]byte
	m1, m2 := m[:aes.BlockSize], m[aes.BlockSize:]
	m1[1], m1[2] = 1, 'X'
	m2[1], m2[2] = 2, 'X'
	copy(m1[4:], nonce[:12])
	copy(m2[4:], nonce[:12])
	subtle.XORBytes(m1, m1, x.k1[:])
	subtle.XORBytes(m2, m2, x.k1[:])
	x.block.Encrypt(kx[:aes.BlockSize], m1)
	x.block.Encrypt(kx[aes.BlockSize:], m2)
}

// gcm returns AES-256-GCM under the per-message key for nonce; its nonce is
// nonce[12:].
func (x *xaes) gcm(nonce []byte) (cipher.AEAD, error) {
	var kx [keySize]byte
	x.deriveKey(&kx, nonce)
	block, err := aes.NewCipher(kx[:])
	clear(kx[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal appends nonce || ciphertext || tag to dst. The remaining capacity of
// dst must not overlap plaintext.
func (x *xaes) seal(dst, nonce, plaintext, aad []byte) []byte {
	aead, err := x.gcm(nonce)
	if err != nil {
		// Unreachable: the derived key always has a valid AES-256 length.
		panic("crypto: XAES-256-GCM key derivation: " + err.Error())
	}
	dst = append(dst, nonce...)
	return aead.Seal(dst, nonce[12:], plaintext, aad)
}

// sealRandom is seal with a fresh random nonce.
func (x *xaes) sealRandom(dst, plaintext, aad []byte) []byte {
	var nonce [nonceSize]byte
	// crypto/rand.Read never returns an error: it crashes the program if
	// the system's generator fails, rather than risk a repeated nonce.
	rand.Read(nonce[:])
	return x.seal(dst, nonce[:], plaintext, aad)
}

// sealInPlace seals buf[nonceSize:] under a fresh random nonce written to
// buf[:nonceSize]; GCM allows its output to alias its input exactly.
func (x *xaes) sealInPlace(buf, aad []byte) []byte {
	buf = slices.Grow(buf, tagSize)
	nonce := buf[:nonceSize]
	rand.Read(nonce)
	aead, err := x.gcm(nonce)
	if err != nil {
		panic("crypto: XAES-256-GCM key derivation: " + err.Error())
	}
	pt := buf[nonceSize:]
	aead.Seal(pt[:0], nonce[12:], pt, aad)
	return buf[:len(buf)+tagSize]
}

// openInPlace is open with the plaintext written over the ciphertext (GCM
// allows its output to alias its input exactly).
func (x *xaes) openInPlace(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < nonceSize {
		return x.open(nil, sealed, aad) // too short: open says so
	}
	return x.open(sealed[nonceSize:nonceSize], sealed, aad)
}

// open authenticates and decrypts sealed (nonce || ciphertext || tag),
// appending the plaintext to dst. The remaining capacity of dst must not
// overlap sealed, except as openInPlace uses it.
func (x *xaes) open(dst, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: sealed data is %d bytes, shorter than the %d byte minimum", ErrAuth, len(sealed), Overhead)
	}
	nonce, ct := sealed[:nonceSize], sealed[nonceSize:]
	aead, err := x.gcm(nonce)
	if err != nil {
		return nil, err
	}
	out, err := aead.Open(dst, nonce[12:], ct, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: the data was modified, truncated, sealed under another key or is not what it is stored as", ErrAuth)
	}
	return out, nil
}
