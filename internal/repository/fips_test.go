package repository

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

func fipsTestOptions() Options {
	kdf := crypto.FastPBKDF2ParamsForTests()
	return Options{KDF: &kdf}
}

// TestFIPSRepository: 'init --fips' records the FIPS algorithms, seals
// with AES-256-GCM-HKDF-SHA-256, wraps its key in PBKDF2 slots that say
// their cipher, and reopens; blobs and objects round-trip.
func TestFIPSRepository(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	r, err := Init(ctx, be, pass, InitOptions{Options: fipsTestOptions(), FIPS: true})
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Config().Algorithms; a != fipsAlgorithms() || !a.FIPS() || a.Encryption != "AES-256-GCM-HKDF-SHA-256" || a.KDF != "pbkdf2-sha256" || a.BlobID != "HMAC-SHA-256" {
		t.Fatalf("algorithms %+v", a)
	}
	data := randBytes(7, 300_000)
	bid, _, err := r.SaveBlob(ctx, index.DataBlob, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddKey(ctx, []byte("a second passphrase"), "second"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddKey(ctx, []byte("too short"), ""); err == nil || !strings.Contains(err.Error(), "at least 14") {
		t.Errorf("short passphrase: %v", err)
	}
	keys, err := r.ListKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	for _, k := range keys {
		if k.KDF != crypto.KDFPBKDF2 {
			t.Errorf("slot %s KDF %s", k.ID, k.KDF)
		}
		s, err := readSlot(ctx, be, k.ID)
		if err != nil || s.Cipher != crypto.SuiteFIPS {
			t.Errorf("slot %s cipher %q, %v", k.ID, s.Cipher, err)
		}
	}
	for _, pw := range [][]byte{pass, []byte("a second passphrase")} {
		r2, err := Open(ctx, be, pw, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r2.Key().Suite() != crypto.SuiteFIPS {
			t.Fatalf("reopened with suite %s", r2.Key().Suite())
		}
		if err := r2.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := r2.LoadBlob(ctx, bid, nil); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("load after reopen: %v", err)
		}
	}
	if _, err := Init(ctx, mem.New(), pass, InitOptions{Options: fipsTestOptions(), FIPS: true, BlobID: crypto.BlobIDBLAKE3}); err == nil || !strings.Contains(err.Error(), "FIPS 140-3") {
		t.Errorf("FIPS with BLAKE3: %v", err)
	}
}

// TestFIPSConfigNoMix: a config mixing the FIPS suite with a non-FIPS
// algorithm, or naming a suite its key does not have, is refused.
func TestFIPSConfigNoMix(t *testing.T) {
	for _, c := range []struct {
		fips bool
		set  func(*Algorithms)
		want string
	}{
		{true, func(a *Algorithms) { a.KDF = crypto.KDFArgon2id }, `key derivation algorithm "argon2id"`},
		{true, func(a *Algorithms) { a.BlobID = crypto.BlobIDBLAKE3 }, "only HMAC-SHA-256 is FIPS 140-3 approved"},
		{true, func(a *Algorithms) { a.ObjectID = id.BLAKE3 }, `object id algorithm "BLAKE3" in a AES-256-GCM-HKDF-SHA-256 repository: only SHA-256`},
		{false, func(a *Algorithms) { a.ObjectID = "SHA-3" }, `object id algorithm "SHA-3" is not one this nestguard knows`},
		{false, func(a *Algorithms) { a.KDF = crypto.KDFPBKDF2 }, `key derivation algorithm "pbkdf2-sha256"`},
		{false, func(a *Algorithms) {
			a.Encryption, a.KDF, a.BlobID, a.ObjectID = crypto.SuiteFIPS, crypto.KDFPBKDF2, crypto.BlobIDHMACSHA256, id.SHA256
		}, "holds a XAES-256-GCM key"},
	} {
		ctx := context.Background()
		be := mem.New()
		opts := testOptions()
		if c.fips {
			opts = fipsTestOptions()
		}
		r, err := Init(ctx, be, pass, InitOptions{Options: opts, FIPS: c.fips})
		if err != nil {
			t.Fatal(err)
		}
		rewriteConfig(t, r, be, c.set)
		if _, err := Open(ctx, be, pass, Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("open: %v, want one containing %q", err, c.want)
		}
	}
}
