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
	Repository string `json:"repository"`
	// Cipher is the seal suite of the master key and of Wrapped: empty
	// for SuiteXAES, so that such slots keep their format byte for byte.
	Cipher  string    `json:"cipher,omitempty"`
	KDF     KDFParams `json:"kdf"`
	Wrapped []byte    `json:"wrapped"` // Seal(KEK, master key, ad: the fields above)
}

// SlotInfo is what a key slot says about itself: stored in the clear and
// authenticated with the wrapped key, so that it cannot be changed without
// the slot failing to open.
type SlotInfo struct {
	Hostname, Username, Label string
	Repository                string
}

// ad is the associated data the wrapped key is sealed with: a domain tag,
// then each descriptive field as a 4-byte big-endian length and its bytes
// (Cipher only when it is set).
func (s *Slot) ad() []byte {
	b := []byte("nestguard key slot v2\x00")
	fields := []string{s.Created.UTC().Format(time.RFC3339Nano), s.Hostname, s.Username, s.Label, s.Repository}
	if s.Cipher != "" {
		fields = append(fields, s.Cipher)
	}
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// suite is the name of the seal suite of the slot.
func (s *Slot) suite() string {
	if s.Cipher == "" {
		return SuiteXAES
	}
	return s.Cipher
}

// CheckUsable says, before any key derivation, whether s can be tried in
// this process: its parameters are valid and, under GODEBUG=fips140=only,
// FIPS 140-3 approved (the error then wraps ErrNotApproved).
func (s *Slot) CheckUsable() error {
	if err := s.KDF.validate(); err != nil {
		return err
	}
	if s.Cipher == SuiteXAES {
		return fmt.Errorf("cipher %q is written as no cipher field", SuiteXAES)
	}
	if err := checkSuite(s.suite()); err != nil {
		return err
	}
	return s.KDF.checkApproved()
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
	if p.Algorithm == KDFPBKDF2 && len(passphrase) < MinPBKDF2Passphrase {
		return nil, fmt.Errorf("the passphrase is %d bytes: a %s slot needs at least %d (FIPS 140-3 approves HMAC keys of 112 bits or more only)", len(passphrase), KDFPBKDF2, MinPBKDF2Passphrase)
	}
	s := &Slot{Created: time.Now().UTC(), Hostname: info.Hostname, Username: info.Username,
		Label: info.Label, Repository: info.Repository, KDF: p}
	if k.suite != SuiteXAES {
		s.Cipher = k.suite
	}
	if err := s.KDF.checkApproved(); err != nil {
		return nil, err
	}
	x, err := kek(&p, passphrase, k.suite)
	if err != nil {
		return nil, err
	}
	defer x.zero()
	s.KDF.Salt = append([]byte(nil), p.Salt...) // not aliased with the caller's
	s.Wrapped = x.sealRandom(nil, k.master[:], s.ad())
	return s, nil
}

// UnwrapKey opens s with passphrase. It returns ErrWrongPassphrase if the
// passphrase does not open the slot (or its descriptive fields were
// changed: the two cannot be told apart), and another error if the slot is
// malformed.
func UnwrapKey(s *Slot, passphrase []byte) (*Key, error) {
	if err := s.CheckUsable(); err != nil {
		if errors.Is(err, ErrNotApproved) {
			return nil, fmt.Errorf("key slot cannot be used: %w", err)
		}
		return nil, fmt.Errorf("key slot is malformed: %w", err)
	}
	if want := keySize + overheadOf(s.suite()); len(s.Wrapped) != want {
		return nil, fmt.Errorf("key slot is malformed: wrapped key is %d bytes, want %d", len(s.Wrapped), want)
	}
	if s.KDF.Algorithm == KDFKeyFile && len(passphrase) != KeyFileSecretSize {
		return nil, ErrWrongPassphrase // a passphrase is never a key file's secret
	}
	if s.KDF.Algorithm == KDFPBKDF2 && len(passphrase) < MinPBKDF2Passphrase {
		return nil, ErrWrongPassphrase // no such slot is ever made
	}
	x, err := kek(&s.KDF, passphrase, s.suite())
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
	return newKey(master, s.suite())
}

// kek derives the key-encryption key from passphrase and returns it ready
// for the seal suite suiteName. The raw derived key is zeroed, and the
// caller zeroes the suite when done; the expanded AES key schedule inside
// XAES's cipher cannot be, and is left to the garbage collector.
func kek(p *KDFParams, passphrase []byte, suiteName string) (suite, error) {
	raw, err := p.deriveKEK(passphrase)
	if err != nil {
		return nil, fmt.Errorf("deriving the key-encryption key: %w", err)
	}
	defer clear(raw)
	return newSuite(suiteName, raw)
}
