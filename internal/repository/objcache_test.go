package repository_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// TestObjectCache: snapshot.List keeps local copies of snapshot objects
// and reads them instead of the storage; a copy that does not check is
// read again from the storage (never reported as damage), the copy of a
// snapshot gone from the storage is dropped, and ListFromStorage (verify)
// sees damage on the storage that a good copy would hide.
func TestObjectCache(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	w := repotest.New(t, repotest.Backend(be))
	var saved []*snapshot.Snapshot
	for i := range 3 {
		sn := &snapshot.Snapshot{Time: time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC), Kind: "files", Hostname: "h", Paths: []string{"/p"}}
		if err := snapshot.Save(ctx, w, sn); err != nil {
			t.Fatal(err)
		}
		saved = append(saved, sn)
	}
	cache := t.TempDir()
	kdf := crypto.FastKDFParamsForTests()
	r, err := repository.Open(ctx, be, []byte(repotest.Password), repository.Options{KDF: &kdf, IndexCacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, r.Config().ID, "snapshots")
	list := func(want int) {
		t.Helper()
		got, unreadable, err := snapshot.List(ctx, r)
		if err != nil || len(unreadable) > 0 || len(got) != want {
			t.Fatalf("List: %d snapshots, unreadable %v, err %v; want %d", len(got), unreadable, err, want)
		}
		for i, sn := range got {
			if sn.ID != saved[i].ID || !sn.Time.Equal(saved[i].Time) {
				t.Fatalf("snapshot %d: %s at %s, want %s at %s", i, sn.ID.Short(), sn.Time, saved[i].ID.Short(), saved[i].Time)
			}
		}
	}
	stored := func(i int) []byte {
		b, err := backend.ReadAll(ctx, be, backend.Handle{Type: backend.SnapshotFile, Name: saved[i].ID.String()}, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	copyOf := func(i int) string { return filepath.Join(dir, saved[i].ID.String()) }

	list(3)
	for i := range saved {
		if b, err := os.ReadFile(copyOf(i)); err != nil || !bytes.Equal(b, stored(i)) {
			t.Fatalf("copy of snapshot %d: %v (equal to the stored bytes: %v)", i, err, bytes.Equal(b, stored(i)))
		}
	}
	if fi, err := os.Stat(copyOf(0)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("copy's mode: %v %v, want 0600", fi.Mode(), err)
	}

	// A damaged copy and one cut short: read from the storage, replaced.
	b, _ := os.ReadFile(copyOf(0))
	b[len(b)/2] ^= 1
	os.WriteFile(copyOf(0), b, 0o600)
	os.WriteFile(copyOf(1), b[:10], 0o600)
	list(3)
	for i := range 2 {
		if b, _ := os.ReadFile(copyOf(i)); !bytes.Equal(b, stored(i)) {
			t.Fatalf("copy %d was not replaced by the stored bytes", i)
		}
	}

	// Damage on the storage under a good copy: List reads the copy (the
	// same bytes the object was written with); verify's listing sees it.
	h := backend.Handle{Type: backend.SnapshotFile, Name: saved[2].ID.String()}
	good := stored(2)
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 1
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, bytes.NewReader(bad), int64(len(bad))); err != nil {
		t.Fatal(err)
	}
	list(3)
	if _, unreadable, err := snapshot.ListFromStorage(ctx, r); err != nil || len(unreadable) != 1 {
		t.Fatalf("ListFromStorage: unreadable %v, err %v; want the damaged snapshot", unreadable, err)
	}

	// Gone from the storage (forgotten): not listed, its copy dropped.
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	list(2)
	if _, err := os.Stat(copyOf(2)); !os.IsNotExist(err) {
		t.Fatalf("the copy of a forgotten snapshot is kept: %v", err)
	}

	// A cache that cannot be written: the storage serves.
	os.RemoveAll(dir)
	os.WriteFile(dir, nil, 0o600)
	list(2)
}
