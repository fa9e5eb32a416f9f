package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
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

// TestObjectIDAlgorithm: objects are named by the config's object hash:
// BLAKE3 in a default repository, SHA-256 in one whose blob IDs are
// HMAC-SHA-256, and SHA-256 in one whose config says so beside BLAKE3 blob
// IDs (made before object names followed the blob ID). Packs, index
// objects and snapshots all carry names that hash their bytes, a pack's
// header opens (it is bound to its body's hash), and everything reads
// back after reopening.
func TestObjectIDAlgorithm(t *testing.T) {
	for _, c := range []struct {
		name   string
		blobID string
		legacy bool // rewrite the config to name SHA-256 objects
		want   string
	}{
		{"default", "", false, id.BLAKE3},
		{"hmac-sha256", crypto.BlobIDHMACSHA256, false, id.SHA256},
		{"blake3 ids, sha-256 objects", crypto.BlobIDBLAKE3, true, id.SHA256},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			be := mem.New()
			r, err := Init(ctx, be, pass, InitOptions{Options: testOptions(), BlobID: c.blobID})
			if err != nil {
				t.Fatal(err)
			}
			if c.legacy {
				rewriteConfig(t, r, be, func(a *Algorithms) { a.ObjectID = id.SHA256 })
				r.Close()
				r = reopen(t, be)
			}
			if got := r.Config().Algorithms.ObjectID; got != c.want {
				t.Fatalf("config records object id %q, want %q", got, c.want)
			}
			h, _ := id.NewHasher(c.want)
			data := randBytes(2, 300_000)
			bid, _, err := r.SaveBlob(ctx, index.DataBlob, data)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			oid, err := r.SaveObject(ctx, backend.SnapshotFile, map[string]int{"a": 1})
			if err != nil {
				t.Fatal(err)
			}
			var pid id.ID
			for _, ft := range []backend.FileType{backend.PackFile, backend.IndexFile, backend.SnapshotFile} {
				n := 0
				err := be.List(ctx, ft, func(fi backend.FileInfo) error {
					n++
					b, err := backend.ReadAll(ctx, be, backend.Handle{Type: ft, Name: fi.Name}, 1<<30)
					if err != nil {
						return err
					}
					if got := h.Sum(b).String(); got != fi.Name {
						t.Errorf("%s/%s: its bytes' %s is %s", ft, fi.Name, c.want, got)
					}
					if ft == backend.PackFile {
						pid, _ = id.Parse(fi.Name)
					}
					return nil
				})
				if err != nil || n != 1 {
					t.Fatalf("%s: %d objects, %v", ft, n, err)
				}
			}
			r2 := reopen(t, be)
			if blobs, _, err := r2.PackHeader(ctx, pid); err != nil || len(blobs) != 1 || blobs[0].ID != bid {
				t.Fatalf("pack header: %v, %v", blobs, err)
			}
			if got, err := r2.LoadBlob(ctx, bid, nil); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("load after reopen: equal=%v err=%v", bytes.Equal(got, data), err)
			}
			var v map[string]int
			if err := r2.LoadObject(ctx, backend.SnapshotFile, oid, &v); err != nil || v["a"] != 1 {
				t.Fatalf("load object: %v %v", v, err)
			}
			if r2.ObjectID([]byte("x")) != h.Sum([]byte("x")) {
				t.Error("ObjectID is not the config's hash")
			}
		})
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
		rewriteConfig(t, r, be, c.set)
		_, err := Open(ctx, be, pass, testOptions())
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "upgrade nestguard") {
			t.Errorf("open: err = %v, want one containing %q", err, c.want)
		}
	}
}

// rewriteConfig replaces r's config object with one whose algorithms set
// changed, sealed under r's key as init seals it.
func rewriteConfig(t *testing.T, r *Repository, be backend.Backend, set func(*Algorithms)) {
	t.Helper()
	ctx := context.Background()
	cfg := r.Config()
	set(&cfg.Algorithms)
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
}
