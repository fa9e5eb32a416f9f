// Package crypto holds the repository's key material and every cryptographic
// operation nestguard performs on it:
//
//   - Seal and Open: XAES-256-GCM (c2sp.org/XAES-256-GCM), AES-256-GCM with a
//     192-bit random nonce and a per-message key, under a subkey of the master
//     key;
//   - BlobID: HMAC-SHA-256 under another subkey, so blob IDs reveal nothing
//     about the plaintext without the key (BlobIDFunc: or keyed BLAKE3, a
//     repository's choice at init);
//   - ChunkerSeed: a third subkey that seeds the chunker's gear table;
//   - key slots: the master key sealed under a key derived from a passphrase
//     with Argon2id.
//
// Subkeys are derived from the 32-byte master key with HKDF-SHA-256, so the
// master key itself is never used directly.
package crypto

import "errors"

// ErrAuth is wrapped by every error Open returns: the data was modified,
// truncated, or sealed under another key.
var ErrAuth = errors.New("authentication failed")

// ErrWrongPassphrase is returned by UnwrapKey when the passphrase does not
// open the key slot.
var ErrWrongPassphrase = errors.New("wrong passphrase")
