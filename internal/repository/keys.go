package repository

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
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
	// Malformed says why a slot cannot be used (it is skipped when
	// unlocking); the other fields are then empty.
	Malformed string `json:"malformed,omitempty"`
}

// maxKeySlotSize bounds a key slot object; they are a few hundred bytes.
const maxKeySlotSize = 64 << 10

// AddKey wraps the master key under passphrase in a new key slot and returns
// the slot's ID. The slot's KDF is the config's: Argon2id, or PBKDF2 in a
// FIPS repository.
func (r *Repository) AddKey(ctx context.Context, passphrase []byte, label string) (string, error) {
	if len(passphrase) == 0 {
		return "", errors.New("empty passphrase")
	}
	if r.cfg.Algorithms.KDF == crypto.KDFPBKDF2 {
		params, err := crypto.DefaultPBKDF2Params()
		if err != nil {
			return "", err
		}
		if r.kdfOverride != nil && r.kdfOverride.Algorithm == crypto.KDFPBKDF2 {
			params.Iterations = r.kdfOverride.Iterations
		}
		return r.addSlot(ctx, passphrase, params, label)
	}
	params, err := crypto.DefaultKDFParams()
	if err != nil {
		return "", err
	}
	if r.kdfOverride != nil && r.kdfOverride.Algorithm != crypto.KDFPBKDF2 {
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
	info := crypto.SlotInfo{Label: label, Repository: r.cfg.ID}
	info.Hostname, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		info.Username = u.Username
	}
	slot, err := crypto.WrapKey(r.key, passphrase, params, info)
	if err != nil {
		return "", fmt.Errorf("wrapping key: %w", err)
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

// ListKeys describes every key slot; one that cannot be read or used is
// listed with the reason in Malformed, so that it can be seen and removed.
func (r *Repository) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	names, err := listSlots(ctx, r.be)
	if err != nil {
		return nil, err
	}
	var out []KeyInfo
	for _, name := range names {
		s, err := readSlot(ctx, r.be, name)
		if err == nil {
			err = s.KDF.Validate()
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			out = append(out, KeyInfo{ID: name, Malformed: err.Error()})
			continue
		}
		out = append(out, KeyInfo{ID: name, Current: name == r.keyID, Created: s.Created,
			Hostname: s.Hostname, Username: s.Username, Label: s.Label, KDF: s.KDF.Algorithm})
	}
	return out, nil
}

// minKeyPrefix is the shortest prefix RemoveKey takes: a removal names
// its slot as snapshot IDs are named, not by a digit or two.
const minKeyPrefix = 4

// RemoveKey deletes the key slot whose ID starts with prefix (at least
// minKeyPrefix characters) and returns its ID. Removing the last slot, or
// the slot this session was opened with, is refused.
func (r *Repository) RemoveKey(ctx context.Context, prefix string) (string, error) {
	if len(prefix) < minKeyPrefix {
		return "", fmt.Errorf("key slot %q: give at least %d characters of its ID (see 'nestguard key list')", prefix, minKeyPrefix)
	}
	keys, err := r.ListKeys(ctx)
	if err != nil {
		return "", err
	}
	var match []KeyInfo
	for _, k := range keys {
		if len(prefix) > 0 && len(prefix) <= len(k.ID) && k.ID[:len(prefix)] == prefix {
			match = append(match, k)
		}
	}
	switch {
	case len(match) == 0:
		return "", fmt.Errorf("no key slot %q (see 'nestguard key list')", prefix)
	case len(match) > 1:
		return "", fmt.Errorf("key slot prefix %q is ambiguous: %d slots match", prefix, len(match))
	case len(keys) == 1:
		return "", ErrLastKey
	case match[0].Current:
		return "", errors.New("refusing to remove the key slot this command was opened with: open with another passphrase to remove it")
	}
	h := backend.Handle{Type: backend.KeyFile, Name: match[0].ID}
	// Never try to delete what the storage retains: say when it can be.
	if err := r.CheckDeletable(ctx, h); err != nil {
		return "", fmt.Errorf("cannot remove key slot %s: %w", shortSlot(match[0].ID), err)
	}
	return match[0].ID, r.be.Remove(ctx, h)
}

// maxUnlockCost bounds the key derivation work one unlock spends over all
// the key slots it tries, in KiB-passes (crypto.KDFParams.Cost): 32 slots
// at the default cost (9 GiB-passes, about 5 s here), or two at the most a
// slot may cost. Slots are tried cheapest first, so a legitimate slot is
// reached before planted expensive ones; past the bound the user names the
// slot with --key-slot.
const maxUnlockCost = 32 * crypto.DefaultKDFCost

// slotRef is one key slot read from the storage for unlocking.
type slotRef struct {
	name string
	slot *crypto.Slot
}

// unlockOptions say which key slots unlock tries and what makes a slot
// the right one.
type unlockOptions struct {
	hint   string // the slot to try alone first (a key file knows its slot: one read)
	only   string // the one slot to try (--key-slot: an id or unique prefix)
	budget uint64 // the most key derivation work to spend (crypto.KDFParams.Cost)
	log    *slog.Logger
	// accept checks a key that a slot opened (that it opens the config);
	// a slot it refuses is passed over like a wrong passphrase.
	accept func(*crypto.Key, *crypto.Slot) error
}

// unlock opens the master key with passphrase and returns it with the
// name of the slot that opened it. Without a slot named, every well-formed
// slot is tried, cheapest first, within o.budget; malformed slots are
// skipped with a warning, so that one planted slot cannot lock the owner
// out and one expensive slot costs at most one bounded derivation.
func unlock(ctx context.Context, be backend.Backend, passphrase []byte, o unlockOptions) (*crypto.Key, string, error) {
	if o.hint != "" && o.only == "" {
		k, err := unlockSlot(ctx, be, passphrase, o.hint, o.accept)
		if err == nil {
			return k, o.hint, nil
		}
		if !errors.Is(err, crypto.ErrWrongPassphrase) && !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
	}
	names, err := listSlots(ctx, be)
	if err != nil {
		return nil, "", err
	}
	if len(names) == 0 {
		return nil, "", fmt.Errorf("%w at %s: it has a config but no key slots", ErrNoRepository, be.Location())
	}
	if o.only != "" {
		name, err := matchSlot(names, o.only)
		if err != nil {
			return nil, "", err
		}
		k, err := unlockSlot(ctx, be, passphrase, name, o.accept)
		if err != nil {
			return nil, "", err
		}
		return k, name, nil
	}
	var slots []slotRef
	var malformed, unapproved []string
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		s, err := readSlot(ctx, be, n)
		if err == nil {
			err = s.CheckUsable()
		}
		if errors.Is(err, crypto.ErrNotApproved) {
			unapproved = append(unapproved, shortSlot(n))
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			o.log.Warn("skipping a key slot that cannot be used", "slot", n, "err", err)
			malformed = append(malformed, shortSlot(n))
			continue
		}
		slots = append(slots, slotRef{n, s})
	}
	// The slots this user made on this host first (what they claim is
	// only checked once one opens, but a planted slot must at least guess
	// both to be tried before the owner's), then the cheapest.
	host, _ := os.Hostname()
	var username string
	if u, err := user.Current(); err == nil {
		username = u.Username
	}
	mine := func(s *crypto.Slot) int {
		if s.Hostname == host && s.Username == username {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(slots, func(a, b slotRef) int {
		return cmp.Or(cmp.Compare(mine(a.slot), mine(b.slot)), cmp.Compare(a.slot.KDF.Cost(), b.slot.KDF.Cost()), strings.Compare(a.name, b.name))
	})
	var (
		spent    uint64
		tried    int
		refused  error // from accept: the last slot that opened but did not fit
		refusals int
	)
	for _, sr := range slots {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		c := sr.slot.KDF.Cost()
		if spent+c > o.budget {
			break
		}
		spent += c
		tried++
		k, err := crypto.UnwrapKey(sr.slot, passphrase)
		if err == nil {
			if err = o.accept(k, sr.slot); err == nil {
				return k, sr.name, nil
			}
			k.Close()
			o.log.Warn("passing over a key slot the passphrase opens", "slot", sr.name, "err", err)
			refused = fmt.Errorf("key slot %s: %w", shortSlot(sr.name), err)
			refusals++
			continue
		}
		if !errors.Is(err, crypto.ErrWrongPassphrase) {
			o.log.Warn("skipping a key slot that cannot be used", "slot", sr.name, "err", err)
			malformed = append(malformed, shortSlot(sr.name))
		}
	}
	if refusals > 0 && refusals == tried {
		// The passphrase is right for every slot it opened, so the
		// config is what is wrong: say that, not "wrong passphrase".
		return nil, "", fmt.Errorf("repository at %s: %w", be.Location(), refused)
	}
	if len(slots) == 0 && len(unapproved) > 0 {
		return nil, "", fmt.Errorf("repository at %s: no key slot can be used in this process: %d use primitives that are %w (this process runs with GODEBUG=fips140=only, where only a repository created with 'nestguard init --fips' opens)", be.Location(), len(unapproved), crypto.ErrNotApproved)
	}
	if len(slots) == 0 && len(malformed) > 0 && len(unapproved) == 0 {
		// Not "wrong passphrase": it was never tried (found by a
		// hostile test).
		return nil, "", fmt.Errorf("repository at %s: no key slot can be read, so the passphrase was not tried: %d damaged (%s); restore the key slots (keys/) from a copy of the storage", be.Location(), len(malformed), strings.Join(malformed, ", "))
	}
	var detail string
	if len(unapproved) > 0 {
		detail += fmt.Sprintf("; skipped %d not FIPS 140-3 approved (GODEBUG=fips140=only): %s", len(unapproved), strings.Join(unapproved, ", "))
	}
	if len(malformed) > 0 {
		detail += fmt.Sprintf("; skipped %d malformed: %s", len(malformed), strings.Join(malformed, ", "))
	}
	if refusals > 0 {
		detail += fmt.Sprintf("; %d opened but belong elsewhere (%v)", refusals, refused)
	}
	if untried := len(slots) - tried; untried > 0 {
		detail += fmt.Sprintf("; %d not tried because trying them would exceed the unlock's work bound: name the slot with --key-slot (ids in 'nestguard key list')", untried)
	}
	return nil, "", fmt.Errorf("%w for the repository at %s (tried %d of %d key slots%s)", ErrWrongPassphrase, be.Location(), tried, len(names), detail)
}

// unlockSlot tries passphrase against the one slot called name.
func unlockSlot(ctx context.Context, be backend.Backend, passphrase []byte, name string, accept func(*crypto.Key, *crypto.Slot) error) (*crypto.Key, error) {
	s, err := readSlot(ctx, be, name)
	if err != nil {
		return nil, err
	}
	k, err := crypto.UnwrapKey(s, passphrase)
	if errors.Is(err, crypto.ErrWrongPassphrase) {
		return nil, fmt.Errorf("%w for key slot %s at %s", err, shortSlot(name), be.Location())
	}
	if err == nil {
		if err = accept(k, s); err != nil {
			k.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("key slot %s: %w", shortSlot(name), err)
	}
	return k, nil
}

// matchSlot resolves a slot id or unique prefix among names.
func matchSlot(names []string, prefix string) (string, error) {
	var match []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			match = append(match, n)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return "", fmt.Errorf("no key slot %q (see 'nestguard key list')", prefix)
	}
	return "", fmt.Errorf("key slot prefix %q is ambiguous: %d slots match; give more digits", prefix, len(match))
}

// shortSlot is the short form of a slot id for messages. A name in keys/
// that is not a slot id (anyone with write access to the storage can put
// one there) is quoted whole, so that it cannot reach a terminal raw.
func shortSlot(name string) string {
	s := name[:min(8, len(name))]
	if len(s) == 8 && strings.Trim(s, "0123456789abcdef") == "" {
		return s
	}
	return strconv.Quote(name)
}

func listSlots(ctx context.Context, be backend.Backend) ([]string, error) {
	var names []string
	if err := be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing key slots: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

func readSlot(ctx context.Context, be backend.Backend, name string) (*crypto.Slot, error) {
	b, err := backend.ReadAll(ctx, be, backend.Handle{Type: backend.KeyFile, Name: name}, maxKeySlotSize)
	if err != nil {
		return nil, fmt.Errorf("reading key slot %s: %w", name, err)
	}
	var s crypto.Slot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("key slot %s is malformed: %w", name, err)
	}
	if s.Repository == "" {
		return nil, fmt.Errorf("key slot %s names no repository: it is malformed, or was written by a development build of nestguard before repository format %d, which this nestguard does not read", name, FormatVersion)
	}
	return &s, nil
}
