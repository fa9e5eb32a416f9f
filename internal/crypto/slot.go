package crypto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Slot is a key slot: the master key sealed under a key derived from one
// passphrase. A repository has one slot per passphrase; any of them unlocks it.
type Slot struct {
	Created  time.Time `json:"created"`
	Hostname string    `json:"hostname,omitempty"`
	Username string    `json:"username,omitempty"`
	Label    string    `json:"label,omitempty"`
	// Repository is the id of the repository the slot belongs to.
	Repository string    `json:"repository"`
	KDF        KDFParams `json:"kdf"`
	Wrapped    []byte    `json:"wrapped"` // XAES-256-GCM(KEK, master key, ad: the fields above)
}

// SlotInfo is what a key slot says about itself: stored in the clear and
// authenticated with the wrapped key, so that it cannot be changed without
// the slot failing to open.
type SlotInfo struct {
	Hostname, Username, Label string
	Repository                string
}

// ad is the associated data the wrapped key is sealed with: a domain tag,
// then each descriptive field as a 4-byte big-endian length and its bytes.
func (s *Slot) ad() []byte {
	b := []byte("nestguard key slot v2\x00")
	for _, f := range []string{s.Created.UTC().Format(time.RFC3339Nano), s.Hostname, s.Username, s.Label, s.Repository} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// WrapKey seals k's master key under the key derived from passphrase with p,
// returning a new slot that carries info, authenticated.
func WrapKey(k *Key, passphrase []byte, p KDFParams, info SlotInfo) (*Slot, error) {
	if k.closed.Load() {
		return nil, ErrClosed
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("invalid key derivation parameters: %w", err)
	}
	if p.Algorithm == KDFKeyFile && len(passphrase) != KeyFileSecretSize {
		return nil, fmt.Errorf("a %s slot needs a %d-byte generated secret", KDFKeyFile, KeyFileSecretSize)
	}
	x, err := kek(&p, passphrase)
	if err != nil {
		return nil, err
	}
	defer x.zero()
	s := &Slot{Created: time.Now().UTC(), Hostname: info.Hostname, Username: info.Username,
		Label: info.Label, Repository: info.Repository, KDF: p}
	s.KDF.Salt = append([]byte(nil), p.Salt...) // not aliased with the caller's
	s.Wrapped = x.sealRandom(nil, k.master[:], s.ad())
	return s, nil
}

// UnwrapKey opens s with passphrase. It returns ErrWrongPassphrase if the
// passphrase does not open the slot (or its descriptive fields were
// changed: the two cannot be told apart), and another error if the slot is
// malformed.
func UnwrapKey(s *Slot, passphrase []byte) (*Key, error) {
	if err := s.KDF.validate(); err != nil {
		return nil, fmt.Errorf("key slot is malformed: %w", err)
	}
	if want := keySize + Overhead; len(s.Wrapped) != want {
		return nil, fmt.Errorf("key slot is malformed: wrapped key is %d bytes, want %d", len(s.Wrapped), want)
	}
	if s.KDF.Algorithm == KDFKeyFile && len(passphrase) != KeyFileSecretSize {
		return nil, ErrWrongPassphrase // a passphrase is never a key file's secret
	}
	x, err := kek(&s.KDF, passphrase)
	if err != nil {
		return nil, err
	}
	defer x.zero()
	master, err := x.open(nil, s.Wrapped, s.ad())
	if errors.Is(err, ErrAuth) {
		return nil, ErrWrongPassphrase
	}
	if err != nil {
		return nil, err
	}
	defer clear(master)
	return newKey(master)
}

// kek derives the key-encryption key from passphrase and returns it ready for
// XAES-256-GCM. The raw derived key is zeroed, and the caller zeroes the
// xaes when done; the expanded AES key schedule inside the cipher cannot
// be, and is left to the garbage collector.
func kek(p *KDFParams, passphrase []byte) (*xaes, error) {
	raw := p.deriveKEK(passphrase)
	defer clear(raw)
	return newXAES(raw)
}
