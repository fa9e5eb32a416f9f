package repository

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
)

// plantSlot writes a key slot that no passphrase opens, as an attacker with
// write access to the storage could, and returns its name.
func plantSlot(t *testing.T, be backend.Backend, kdf crypto.KDFParams) string {
	t.Helper()
	if kdf.Salt == nil {
		kdf.Salt = make([]byte, 32)
		rand.Read(kdf.Salt)
	}
	wrapped := make([]byte, 32+crypto.Overhead)
	rand.Read(wrapped)
	b, err := json.Marshal(crypto.Slot{Created: time.Now(), Repository: "planted", KDF: kdf, Wrapped: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	return plantRaw(t, be, b)
}

func plantRaw(t *testing.T, be backend.Backend, b []byte) string {
	t.Helper()
	name := id.Hash(b).String()
	if err := be.Save(context.Background(), backend.Handle{Type: backend.KeyFile, Name: name}, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return name
}

// A slot planted with absurd KDF parameters (the attack: 100 passes over
// 4 GiB on 255 lanes took 212 s and 4.1 GB per unlock) and a malformed
// slot are skipped without deriving anything: the right passphrase still
// opens the repository at once, and a wrong one fails naming them.
func TestUnlockSkipsHostileSlots(t *testing.T) {
	ctx := context.Background()
	_, be := newRepo(t)
	huge := plantSlot(t, be, crypto.KDFParams{Algorithm: crypto.KDFArgon2id, Time: 100, MemoryKiB: 4 << 20, Threads: 255})
	costly := plantSlot(t, be, crypto.KDFParams{Algorithm: crypto.KDFArgon2id, Time: 16, MemoryKiB: 1 << 20, Threads: 4})
	junk := plantRaw(t, be, []byte(`{"kdf": 7}`))

	if _, err := Open(ctx, be, pass, testOptions()); err != nil {
		t.Fatalf("the right passphrase beside planted slots: %v", err)
	}
	_, err := Open(ctx, be, []byte("wrong"), testOptions())
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	for _, n := range []string{huge, costly, junk} {
		if !strings.Contains(err.Error(), n[:8]) {
			t.Errorf("the error does not name skipped slot %s: %v", n[:8], err)
		}
	}
	if !strings.Contains(err.Error(), "skipped 3 malformed") {
		t.Errorf("the error does not count the skipped slots: %v", err)
	}
}

// Slots are tried cheapest first and only within the unlock's work bound:
// expensive slots planted beside the owner's are reached last, and past
// the bound the error says to name the slot, which --key-slot then opens.
func TestUnlockBoundsWorkAndNamedSlot(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	owner := r.keyID
	fast := crypto.FastKDFParamsForTests()
	// Three planted slots that cost twice the owner's each.
	for range 3 {
		p := crypto.FastKDFParamsForTests()
		p.Time = 2 * fast.Time
		plantSlot(t, be, p)
	}
	o := testOptions()
	o.unlockCost = fast.Cost() * 3 // the owner's slot and one planted one
	if _, err := Open(ctx, be, pass, o); err != nil {
		t.Fatalf("the owner's slot is the cheapest and must be tried first: %v", err)
	}
	_, err := Open(ctx, be, []byte("wrong"), o)
	if !errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "tried 2 of 4") || !strings.Contains(err.Error(), "--key-slot") {
		t.Fatalf("past the bound the error must say how many were tried and point to --key-slot: %v", err)
	}

	// Naming the slot tries it alone, by id or prefix.
	o.unlockCost = 1 // nothing would be tried otherwise
	o.OnlyKeySlot = owner[:10]
	if r2, err := Open(ctx, be, pass, o); err != nil || r2.keyID != owner {
		t.Fatalf("--key-slot %s: %v", owner[:10], err)
	}
	o.OnlyKeySlot = "ffffffffff"
	if _, err := Open(ctx, be, pass, o); err == nil || !strings.Contains(err.Error(), "no key slot") {
		t.Fatalf("--key-slot naming no slot: %v", err)
	}
}

// Slots that claim this host and user are tried before cheaper ones that
// do not: planted slots cheaper than the owner's (which would otherwise
// use up the budget first) must at least guess both.
func TestUnlockTriesOwnHostFirst(t *testing.T) {
	ctx := context.Background()
	_, be := newRepo(t)
	fast := crypto.FastKDFParamsForTests()
	for range 3 {
		plantSlot(t, be, crypto.KDFParams{Algorithm: crypto.KDFArgon2id, Time: 1, MemoryKiB: 8, Threads: 1})
	}
	o := testOptions()
	o.unlockCost = fast.Cost() // the owner's slot alone
	if _, err := Open(ctx, be, pass, o); err != nil {
		t.Fatalf("the owner's slot (this host and user) must be tried before cheaper foreign ones: %v", err)
	}
}

// TestUnlockBudgetKeepsOldSlots: slots keep the parameters they were made
// with, so a repository whose slots predate the current default (3 passes
// over 64 MiB before 2026-12-06) must still have at least 32 of them
// tried in one unlock, as it had, and two slots at the bound.
func TestUnlockBudgetKeepsOldSlots(t *testing.T) {
	old := crypto.KDFParams{Algorithm: crypto.KDFArgon2id, Time: 3, MemoryKiB: 64 << 10, Threads: 4}
	if c := 32 * old.Cost(); c > maxUnlockCost {
		t.Errorf("32 slots of 3 passes over 64 MiB cost %d, over the unlock bound %d", c, uint64(maxUnlockCost))
	}
	if 2*crypto.MaxKDFCost > maxUnlockCost {
		t.Errorf("two slots at the bound cost %d, over the unlock bound %d", 2*crypto.MaxKDFCost, uint64(maxUnlockCost))
	}
}
