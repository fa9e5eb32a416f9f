package repository

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
)

// KeyInfo describes a key slot for 'nestguard key list'.
type KeyInfo struct {
	ID       string    `json:"id"`
	Current  bool      `json:"current"`
	Created  time.Time `json:"created"`
	Hostname string    `json:"hostname,omitempty"`
	Username string    `json:"username,omitempty"`
	Label    string    `json:"label,omitempty"`
	KDF      string    `json:"kdf"`
}

// maxKeySlotSize bounds a key slot object; they are a few hundred bytes.
const maxKeySlotSize = 64 << 10

// AddKey wraps the master key under passphrase in a new key slot and returns
// the slot's ID.
func (r *Repository) AddKey(ctx context.Context, passphrase []byte, label string) (string, error) {
	if len(passphrase) == 0 {
		return "", errors.New("empty passphrase")
	}
	params, err := crypto.DefaultKDFParams()
	if err != nil {
		return "", err
	}
	if r.kdfOverride != nil {
		params.Time, params.MemoryKiB, params.Threads = r.kdfOverride.Time, r.kdfOverride.MemoryKiB, r.kdfOverride.Threads
	}
	return r.addSlot(ctx, passphrase, params, label)
}

// AddKeyFile adds a key slot opened by a new random 256-bit secret instead of
// a passphrase, and returns the slot ID and the secret (see KeyFile). Such a
// slot unlocks in microseconds, for commands that run once per WAL segment.
func (r *Repository) AddKeyFile(ctx context.Context, label string) (slotID string, secret []byte, err error) {
	params, err := crypto.KeyFileKDFParams()
	if err != nil {
		return "", nil, err
	}
	secret = make([]byte, crypto.KeyFileSecretSize)
	if _, err := rand.Read(secret); err != nil {
		return "", nil, err
	}
	slotID, err = r.addSlot(ctx, secret, params, label)
	return slotID, secret, err
}

func (r *Repository) addSlot(ctx context.Context, passphrase []byte, params crypto.KDFParams, label string) (string, error) {
	slot, err := crypto.WrapKey(r.key, passphrase, params)
	if err != nil {
		return "", fmt.Errorf("wrapping key: %w", err)
	}
	slot.Label = label
	slot.Hostname, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		slot.Username = u.Username
	}
	b, err := json.Marshal(slot)
	if err != nil {
		return "", err
	}
	name := id.Hash(b).String()
	h := backend.Handle{Type: backend.KeyFile, Name: name}
	if err := r.be.Save(ctx, h, bytes.NewReader(b), int64(len(b))); err != nil {
		return "", fmt.Errorf("saving key slot: %w", err)
	}
	return name, nil
}

// ListKeys describes every key slot.
func (r *Repository) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := forEachSlot(ctx, r.be, func(name string, s *crypto.Slot) error {
		out = append(out, KeyInfo{ID: name, Current: name == r.keyID, Created: s.Created,
			Hostname: s.Hostname, Username: s.Username, Label: s.Label, KDF: s.KDF.Algorithm})
		return nil
	})
	return out, err
}

// RemoveKey deletes the key slot whose ID starts with prefix. Removing the
// last slot, or the slot this session was opened with, is refused.
func (r *Repository) RemoveKey(ctx context.Context, prefix string) error {
	keys, err := r.ListKeys(ctx)
	if err != nil {
		return err
	}
	var match []KeyInfo
	for _, k := range keys {
		if len(prefix) > 0 && len(prefix) <= len(k.ID) && k.ID[:len(prefix)] == prefix {
			match = append(match, k)
		}
	}
	switch {
	case len(match) == 0:
		return fmt.Errorf("no key slot %q (see 'nestguard key list')", prefix)
	case len(match) > 1:
		return fmt.Errorf("key slot prefix %q is ambiguous: %d slots match", prefix, len(match))
	case len(keys) == 1:
		return ErrLastKey
	case match[0].Current:
		return errors.New("refusing to remove the key slot this command was opened with: open with another passphrase to remove it")
	}
	h := backend.Handle{Type: backend.KeyFile, Name: match[0].ID}
	// Never try to delete what the storage retains: say when it can be.
	if err := r.CheckDeletable(ctx, h); err != nil {
		return fmt.Errorf("cannot remove key slot %s: %w", match[0].ID[:8], err)
	}
	return r.be.Remove(ctx, h)
}

// unlock tries passphrase against every key slot; hint, if not empty, names
// the slot to try alone first (a key file knows its slot: one read).
func unlock(ctx context.Context, be backend.Backend, passphrase []byte, hint string) (*crypto.Key, string, error) {
	if hint != "" {
		b, err := readAll(ctx, be, backend.Handle{Type: backend.KeyFile, Name: hint}, maxKeySlotSize)
		if err == nil {
			var s crypto.Slot
			if err := json.Unmarshal(b, &s); err != nil {
				return nil, "", fmt.Errorf("key slot %s is malformed: %w", hint, err)
			}
			k, err := crypto.UnwrapKey(&s, passphrase)
			if err == nil {
				return k, hint, nil
			}
			if !errors.Is(err, crypto.ErrWrongPassphrase) {
				return nil, "", fmt.Errorf("key slot %s: %w", hint[:min(8, len(hint))], err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("reading key slot %s: %w", hint, err)
		}
	}
	var (
		key   *crypto.Key
		name  string
		tried int
		other error
	)
	errFound := errors.New("found")
	err := forEachSlot(ctx, be, func(n string, s *crypto.Slot) error {
		tried++
		k, err := crypto.UnwrapKey(s, passphrase)
		if err == nil {
			key, name = k, n
			return errFound
		}
		if !errors.Is(err, crypto.ErrWrongPassphrase) {
			other = fmt.Errorf("key slot %s: %w", n[:8], err)
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return key, name, nil
	}
	if err != nil {
		return nil, "", err
	}
	if tried == 0 {
		return nil, "", fmt.Errorf("%w at %s: it has a config but no key slots", ErrNoRepository, be.Location())
	}
	if other != nil {
		return nil, "", other
	}
	return nil, "", fmt.Errorf("%w for the repository at %s (tried %d key slots)", ErrWrongPassphrase, be.Location(), tried)
}

func forEachSlot(ctx context.Context, be backend.Backend, fn func(string, *crypto.Slot) error) error {
	var names []string
	if err := be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return fmt.Errorf("listing key slots: %w", err)
	}
	for _, n := range names {
		b, err := readAll(ctx, be, backend.Handle{Type: backend.KeyFile, Name: n}, maxKeySlotSize)
		if err != nil {
			return fmt.Errorf("reading key slot %s: %w", n, err)
		}
		var s crypto.Slot
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("key slot %s is malformed: %w", n, err)
		}
		if err := fn(n, &s); err != nil {
			return err
		}
	}
	return nil
}
