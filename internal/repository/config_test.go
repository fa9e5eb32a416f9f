package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/index"
)

// TestBlobIDAlgorithm: a repository created with BLAKE3 names its blobs
// with it, in this session and after reopening, so deduplication and the
// ID check on every read both use the config's algorithm.
func TestBlobIDAlgorithm(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	r, err := Init(ctx, be, pass, InitOptions{Options: testOptions(), BlobID: crypto.BlobIDBLAKE3})
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(1, 300_000)
	bid, _, err := r.SaveBlob(ctx, index.DataBlob, data)
	if err != nil {
		t.Fatal(err)
	}
	b3, err := r.key.BlobIDFunc(crypto.BlobIDBLAKE3)
	if err != nil {
		t.Fatal(err)
	}
	if bid != b3(data) || bid == r.key.BlobID(data) {
		t.Fatal("blob was not named by keyed BLAKE3")
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, be)
	if got := r2.Config().Algorithms.BlobID; got != crypto.BlobIDBLAKE3 {
		t.Fatalf("config records blob id %q", got)
	}
	if got, err := r2.LoadBlob(ctx, bid, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("load after reopen: equal=%v err=%v", bytes.Equal(got, data), err)
	}
	if _, known, err := r2.SaveBlob(ctx, index.DataBlob, data); err != nil || !known {
		t.Fatalf("saving the same data after reopen: known=%v err=%v", known, err)
	}
}

// TestUnknownAlgorithmRefused: a config naming an algorithm this build
// does not implement (written by a newer nestguard, or damaged) is refused
// at open with the field and name, instead of failing on every object.
func TestUnknownAlgorithmRefused(t *testing.T) {
	for _, c := range []struct {
		set  func(*Algorithms)
		want string
	}{
		{func(a *Algorithms) { a.BlobID = "BLAKE9" }, `blob id algorithm "BLAKE9"`},
		{func(a *Algorithms) { a.Encryption = "ChaCha20-Poly1305" }, `encryption algorithm "ChaCha20-Poly1305"`},
		{func(a *Algorithms) { a.Chunker = "" }, `chunker algorithm ""`},
	} {
		ctx := context.Background()
		r, be := newRepo(t)
		cfg := r.Config()
		c.set(&cfg.Algorithms)
		plain, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := r.key.Seal(nil, plain, adConfig())
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Remove(ctx, configHandle); err != nil {
			t.Fatal(err)
		}
		if err := be.Save(ctx, configHandle, bytes.NewReader(sealed), int64(len(sealed))); err != nil {
			t.Fatal(err)
		}
		_, err = Open(ctx, be, pass, testOptions())
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "upgrade nestguard") {
			t.Errorf("open: err = %v, want one containing %q", err, c.want)
		}
	}
}
