package crypto

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWrapUnwrap(t *testing.T) {
	k := newTestKey(t)
	before := time.Now().Add(-time.Second)
	s, err := WrapKey(k, []byte("correct horse"), FastKDFParamsForTests(), SlotInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Created.Before(before) || s.Created.Location() != time.UTC {
		t.Errorf("Created = %v, want the current time in UTC", s.Created)
	}
	if bytes.Contains(s.Wrapped, k.master[:]) {
		t.Fatal("wrapped key contains the master key")
	}
	// The slot goes through JSON in the repository.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var s2 Slot
	if err := json.Unmarshal(b, &s2); err != nil {
		t.Fatal(err)
	}
	k2, err := UnwrapKey(&s2, []byte("correct horse"))
	if err != nil {
		t.Fatalf("UnwrapKey: %v", err)
	}
	if k2.master != k.master {
		t.Fatal("unwrapped master key differs")
	}
	if got, err := k2.Open(nil, mustSeal(t, k, nil, []byte("hi"), nil), nil); err != nil || string(got) != "hi" {
		t.Errorf("unwrapped key cannot open what the original sealed: %q, %v", got, err)
	}

	for _, pw := range []string{"correct hors", "correct horse ", "Correct horse", ""} {
		if _, err := UnwrapKey(&s2, []byte(pw)); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("passphrase %q: err = %v, want ErrWrongPassphrase", pw, err)
		}
	}
	if !strings.Contains(ErrWrongPassphrase.Error(), "wrong passphrase") {
		t.Errorf("ErrWrongPassphrase message %q", ErrWrongPassphrase)
	}
}

func TestWrapKeyFreshSalt(t *testing.T) {
	k := newTestKey(t)
	p := FastKDFParamsForTests()
	s1, err1 := WrapKey(k, []byte("pw"), p, SlotInfo{})
	s2, err2 := WrapKey(k, []byte("pw"), FastKDFParamsForTests(), SlotInfo{})
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if bytes.Equal(s1.KDF.Salt, s2.KDF.Salt) || bytes.Equal(s1.Wrapped, s2.Wrapped) {
		t.Error("two slots share a salt or wrapped key")
	}
	p.Salt[0] ^= 1
	if bytes.Equal(p.Salt, s1.KDF.Salt) {
		t.Error("slot aliases the caller's salt")
	}
}

func TestDefaultKDFParams(t *testing.T) {
	p1, err := DefaultKDFParams()
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := DefaultKDFParams()
	if p1.Algorithm != "argon2id" || p1.Time != 6 || p1.MemoryKiB != 48<<10 || p1.Threads != 4 || p1.Cost() != DefaultKDFCost || len(p1.Salt) != 32 {
		t.Errorf("DefaultKDFParams = %+v", p1)
	}
	if bytes.Equal(p1.Salt, p2.Salt) {
		t.Error("DefaultKDFParams reuses its salt")
	}
	if err := p1.validate(); err != nil {
		t.Errorf("default params rejected: %v", err)
	}
}

func TestUnwrapRejectsMalformedSlots(t *testing.T) {
	k := newTestKey(t)
	good, err := WrapKey(k, []byte("pw"), FastKDFParamsForTests(), SlotInfo{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		mutate func(*Slot)
		want   string
	}{
		{"unknown algorithm", func(s *Slot) { s.KDF.Algorithm = "scrypt" }, "unknown key derivation algorithm"},
		{"empty algorithm", func(s *Slot) { s.KDF.Algorithm = "" }, "unknown key derivation algorithm"},
		{"time 0", func(s *Slot) { s.KDF.Time = 0 }, "time"},
		{"time too large", func(s *Slot) { s.KDF.Time = 101 }, "time"},
		{"threads 0", func(s *Slot) { s.KDF.Threads = 0 }, "threads"},
		{"memory too large", func(s *Slot) { s.KDF.MemoryKiB = 4<<20 + 1 }, "memory"},
		{"memory 0", func(s *Slot) { s.KDF.MemoryKiB = 0 }, "memory"},
		{"memory below 8 KiB per thread", func(s *Slot) { s.KDF.Threads, s.KDF.MemoryKiB = 4, 31 }, "memory"},
		{"short salt", func(s *Slot) { s.KDF.Salt = s.KDF.Salt[:15] }, "salt"},
		{"no salt", func(s *Slot) { s.KDF.Salt = nil }, "salt"},
		{"huge salt", func(s *Slot) { s.KDF.Salt = make([]byte, 1025) }, "salt"},
		{"short wrapped", func(s *Slot) { s.Wrapped = s.Wrapped[:len(s.Wrapped)-1] }, "wrapped key"},
		{"long wrapped", func(s *Slot) { s.Wrapped = append(s.Wrapped, 0) }, "wrapped key"},
		{"no wrapped", func(s *Slot) { s.Wrapped = nil }, "wrapped key"},
	} {
		s := *good
		s.KDF.Salt = bytes.Clone(good.KDF.Salt)
		s.Wrapped = bytes.Clone(good.Wrapped)
		c.mutate(&s)
		_, err := UnwrapKey(&s, []byte("pw"))
		if err == nil || errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want a malformed-slot error mentioning %q", c.name, err, c.want)
		}
		if _, err := WrapKey(k, []byte("pw"), s.KDF, SlotInfo{}); s.KDF.validate() != nil && err == nil {
			t.Errorf("%s: WrapKey accepted the parameters", c.name)
		}
	}

	// Altered but in-range parameters derive another key: that is a wrong
	// passphrase as far as anyone can tell, not a malformed slot.
	for _, mutate := range []func(*Slot){
		func(s *Slot) { s.KDF.Time++ },
		func(s *Slot) { s.KDF.Salt[0] ^= 1 },
		func(s *Slot) { s.Wrapped[len(s.Wrapped)-1] ^= 1 },
	} {
		s := *good
		s.KDF.Salt = bytes.Clone(good.KDF.Salt)
		s.Wrapped = bytes.Clone(good.Wrapped)
		mutate(&s)
		if _, err := UnwrapKey(&s, []byte("pw")); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("tampered slot: err = %v, want ErrWrongPassphrase", err)
		}
	}
	if _, err := UnwrapKey(good, []byte("pw")); err != nil {
		t.Errorf("untouched slot no longer opens: %v", err)
	}
}

// A key slot's descriptive fields are authenticated: changing any of them
// makes the slot fail to open, as a wrong passphrase does.
func TestSlotInfoAuthenticated(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	info := SlotInfo{Hostname: "db1", Username: "postgres", Label: "archive", Repository: "0123abcd"}
	s, err := WrapKey(k, []byte("pw"), FastKDFParamsForTests(), info)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnwrapKey(s, []byte("pw")); err != nil {
		t.Fatalf("unchanged slot: %v", err)
	}
	for name, change := range map[string]func(*Slot){
		"hostname":   func(s *Slot) { s.Hostname = "evil" },
		"username":   func(s *Slot) { s.Username = "root" },
		"label":      func(s *Slot) { s.Label = "archive\x1b[2J" },
		"repository": func(s *Slot) { s.Repository = "ffff" },
		"created":    func(s *Slot) { s.Created = s.Created.Add(time.Second) },
	} {
		c := *s
		change(&c)
		if _, err := UnwrapKey(&c, []byte("pw")); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("changed %s: %v", name, err)
		}
	}
}
