package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// The substitution attack of issue 17: a file an attacker gets backed up
// becomes one data blob; its sealed bytes, copied out of the pack into
// snapshots/ or holds/ under their hash (or over a pack header, or read as
// a tree), must not open as anything but that data blob.
func TestSealedBlobIsNotAnObject(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	fake, err := json.Marshal(map[string]any{"time": time.Now(), "kind": "files", "paths": []string{"/etc"},
		"hostname": "forged", "tree": id.Hash([]byte("x")).String()})
	if err != nil {
		t.Fatal(err)
	}
	bid, _, err := r.SaveBlob(ctx, index.DataBlob, fake)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e, ok := r.Index().Lookup(bid)
	if !ok {
		t.Fatal("blob not indexed")
	}
	rd, err := be.Load(ctx, backend.Handle{Type: backend.PackFile, Name: e.Pack.String()}, int64(e.Offset), int64(e.Length))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := io.ReadAll(rd)
	rd.Close()
	if err != nil {
		t.Fatal(err)
	}

	for _, ft := range []backend.FileType{backend.SnapshotFile, backend.HoldFile, backend.IndexFile} {
		oid := id.Hash(sealed)
		if err := be.Save(ctx, backend.Handle{Type: ft, Name: oid.String()}, bytes.NewReader(sealed), int64(len(sealed))); err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := r.LoadObject(ctx, ft, oid, &v); !errors.Is(err, ErrObjectCorrupted) {
			t.Errorf("a data blob copied into %s/ opened as one: %v %v", ft, v, err)
		}
	}
	if _, err := r.OpenNamed(backend.Handle{Type: backend.WALFile, Name: "000000010000000000000001"}, bytes.Clone(sealed)); !errors.Is(err, ErrObjectCorrupted) {
		t.Errorf("a data blob opened as a WAL object: %v", err)
	}
	if _, err := r.key.Open(nil, sealed, adPackHeader(make([]byte, 32))); err == nil {
		t.Error("a data blob opened as a pack header")
	}
	if _, err := r.key.Open(nil, sealed, adConfig()); err == nil {
		t.Error("a data blob opened as the config")
	}
	// The same bytes indexed as a tree blob of the same id.
	asTree := e
	asTree.Type = index.TreeBlob
	var dec []byte
	if _, err := r.OpenBlob(asTree, bytes.Clone(sealed), &dec); !errors.Is(err, ErrObjectCorrupted) {
		t.Errorf("a data blob opened as a tree: %v", err)
	}
	// And under another blob's id.
	other := e
	other.ID = id.Hash([]byte("another blob"))
	if _, err := r.OpenBlob(other, bytes.Clone(sealed), &dec); !errors.Is(err, ErrObjectCorrupted) {
		t.Errorf("a data blob opened under another blob's id: %v", err)
	}
	if got, err := r.OpenBlob(e, bytes.Clone(sealed), &dec); err != nil || !bytes.Equal(got, fake) {
		t.Fatalf("the blob itself: %v", err)
	}
}

// A named object moved to another name or type does not open.
func TestNamedObjectBoundToName(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	if err := r.SaveNamed(ctx, backend.WALFile, "000000010000000000000001", []byte("segment")); err != nil {
		t.Fatal(err)
	}
	rd, err := be.Load(ctx, backend.Handle{Type: backend.WALFile, Name: "000000010000000000000001"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := io.ReadAll(rd)
	rd.Close()
	if _, err := r.OpenNamed(backend.Handle{Type: backend.WALFile, Name: "000000010000000000000002"}, bytes.Clone(sealed)); !errors.Is(err, ErrObjectCorrupted) {
		t.Errorf("opened under another name: %v", err)
	}
	if _, err := r.OpenNamed(backend.Handle{Type: backend.HoldFile, Name: "000000010000000000000001"}, bytes.Clone(sealed)); !errors.Is(err, ErrObjectCorrupted) {
		t.Errorf("opened as another type: %v", err)
	}
}

// Issue 17's fake pack: junk followed by a real pack's sealed header and
// trailer, stored under the hash of its own bytes. Indexed from its header
// it would take the real pack's place (and its retention and holds). Only
// a pack whose bytes hash to its name is indexed from its header.
func TestFakePackWithRealHeaderNotIndexed(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	bid, _, err := r.SaveBlob(ctx, index.DataBlob, bytes.Repeat([]byte("ledger "), 4000))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e, _ := r.Index().Lookup(bid)
	real := backend.Handle{Type: backend.PackFile, Name: e.Pack.String()}
	rd, err := be.Load(ctx, real, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := io.ReadAll(rd)
	rd.Close()
	// The junk is as long as the blobs, so the header's offsets fit.
	fake := append(bytes.Repeat([]byte{0xa5}, int(e.Offset+e.Length)), whole[e.Offset+e.Length:]...)
	fid := id.Hash(fake)
	if err := be.Save(ctx, backend.Handle{Type: backend.PackFile, Name: fid.String()}, bytes.NewReader(fake), int64(len(fake))); err != nil {
		t.Fatal(err)
	}
	// Both packs are orphans: no index object lists either.
	ids, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ids {
		if err := be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: i.String()}); err != nil {
			t.Fatal(err)
		}
	}
	r2, err := Open(ctx, be, pass, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	n, bad, _, err := r2.indexOrphans(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(bad) != 1 || bad[0] != fid {
		t.Fatalf("indexed %d packs, bad %v: want the real one indexed and the fake %s refused", n, bad, fid.Short())
	}
	if got, ok := r2.Index().Lookup(bid); !ok || got.Pack != e.Pack {
		t.Fatalf("blob located in pack %s, want the real pack %s", got.Pack.Short(), e.Pack.Short())
	}
}
