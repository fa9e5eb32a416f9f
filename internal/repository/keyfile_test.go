package repository

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestKeyFileOpensRepository(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	slot, secret, err := r.AddKeyFile(ctx, "archive_command")
	if err != nil {
		t.Fatal(err)
	}
	content := FormatKeyFile(slot, secret)
	gotSlot, gotSecret, err := ParseKeyFile(content)
	if err != nil || gotSlot != slot || !bytes.Equal(gotSecret, secret) {
		t.Fatalf("round trip: slot %q err %v", gotSlot, err)
	}
	r2, err := Open(ctx, be, gotSecret, Options{KeySlot: gotSlot})
	if err != nil {
		t.Fatalf("open with key file: %v", err)
	}
	if r2.Config().ID != r.Config().ID {
		t.Fatal("key file opened another repository")
	}
	// Without the hint every slot is tried, and the key file still opens it.
	if _, err := Open(ctx, be, gotSecret, Options{}); err != nil {
		t.Fatalf("open with key file, no hint: %v", err)
	}
	// A passphrase never opens a key-file slot, even when hinted at it.
	if _, err := Open(ctx, be, []byte("guess"), Options{KeySlot: gotSlot}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("passphrase against key-file slot: %v", err)
	}
	// A wrong secret for the right slot.
	bad := bytes.Clone(gotSecret)
	bad[0] ^= 1
	if _, err := Open(ctx, be, bad, Options{KeySlot: gotSlot}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestParseKeyFileRejects(t *testing.T) {
	slot := strings.Repeat("ab", 32)
	for _, in := range []string{
		"", "hunter2", keyFilePrefix, keyFilePrefix + slot, keyFilePrefix + "short:AAAA",
		keyFilePrefix + slot + ":not base64!", keyFilePrefix + slot + ":AAAA",
	} {
		if _, _, err := ParseKeyFile([]byte(in)); err == nil {
			t.Errorf("accepted %q", in)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error quotes the content: %v", err)
		}
	}
}

func FuzzParseKeyFile(f *testing.F) {
	f.Add(FormatKeyFile(strings.Repeat("0", 64), make([]byte, 32)))
	f.Add([]byte("nestguard-key-v1:x:y"))
	f.Fuzz(func(t *testing.T, b []byte) {
		slot, secret, err := ParseKeyFile(b)
		if err != nil {
			return
		}
		if len(slot) != 64 || len(secret) != 32 {
			t.Fatalf("accepted slot %q with a %d-byte secret", slot, len(secret))
		}
	})
}
