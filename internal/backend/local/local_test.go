package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/backendtest"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		b, err := Create(filepath.Join(t.TempDir(), "repo"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// Two backends on one directory stand in for two processes.
func TestConformanceTwoInstances(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	a, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.PackFile, Name: "ab01"}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, be := range []*Backend{a, b} {
		wg.Go(func() {
			d := bytes.Repeat([]byte{byte(i)}, 1<<20)
			errs[i] = be.Save(context.Background(), h, bytes.NewReader(d), int64(len(d)))
		})
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("racing Saves from two instances: %v, %v; want exactly one success", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, fs.ErrExist) {
			t.Errorf("losing Save: %v, want fs.ErrExist", err)
		}
	}
}

func TestCreateLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "repo")
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Location() != dir {
		t.Errorf("Location() = %q, want %q", b.Location(), dir)
	}
	for _, sub := range []string{"keys", "index", "snapshots", "wal", "holds", "data"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want a directory private to its owner", sub, fi.Mode())
		}
	}
	// Pack subdirectories come with their first pack.
	ents, err := os.ReadDir(filepath.Join(dir, "data"))
	if err != nil || len(ents) != 0 {
		t.Errorf("data has %d subdirectories (%v), want none before the first pack", len(ents), err)
	}
	// Create is idempotent: init decides whether a repository exists.
	if _, err := Create(dir); err != nil {
		t.Errorf("Create of an existing layout: %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nothing-here")
	b, err := Open(dir)
	if err != nil {
		t.Fatalf("Open of a missing directory must succeed: %v", err)
	}
	if _, err := b.Stat(ctx, backend.Handle{Type: backend.ConfigFile, Name: "config"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat config of a missing repository: %v, want fs.ErrNotExist", err)
	}
	if _, err := b.Load(ctx, backend.Handle{Type: backend.ConfigFile, Name: "config"}, 0, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load config of a missing repository: %v, want fs.ErrNotExist", err)
	}
	if err := b.List(ctx, backend.PackFile, func(backend.FileInfo) error { return errors.New("called") }); err != nil {
		t.Errorf("List of a missing repository: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Error("Open created the directory")
	}
}

func TestOpenRelativeAndFile(t *testing.T) {
	t.Chdir(t.TempDir())
	b, err := Open("rel/repo")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(b.Location()) || !strings.HasSuffix(b.Location(), filepath.Join("rel", "repo")) {
		t.Errorf("Location() = %q, want an absolute path ending in rel/repo", b.Location())
	}
	if err := os.WriteFile("file", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("file"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Open of a regular file: %v", err)
	}
	if _, err := Open(""); err == nil {
		t.Error("Open of an empty path: no error")
	}
}

func newTestBackend(t *testing.T) *Backend {
	t.Helper()
	b, err := Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStoredFilesReadOnly(t *testing.T) {
	b := newTestBackend(t)
	h := backend.Handle{Type: backend.PackFile, Name: "c0ffee"}
	if err := b.Save(context.Background(), h, bytes.NewReader([]byte("pack")), 4); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(b.Location(), "data", "c0", "c0ffee"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("stored file mode %v, want -r--------", fi.Mode())
	}
}

func TestNoTempFilesLeft(t *testing.T) {
	b := newTestBackend(t)
	ctx := context.Background()
	ok := backend.Handle{Type: backend.KeyFile, Name: "k1"}
	if err := b.Save(ctx, ok, bytes.NewReader([]byte("key")), 3); err != nil {
		t.Fatal(err)
	}
	_ = b.Save(ctx, ok, bytes.NewReader([]byte("dup")), 3)                                      // exists
	_ = b.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: "k2"}, bytes.NewReader(nil), 3) // short
	if tmps := tempFiles(t, b.Location()); len(tmps) != 0 {
		t.Errorf("temporary files left behind: %v", tmps)
	}
}

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTempFilesNotListedAndCleaned(t *testing.T) {
	b := newTestBackend(t)
	ctx := context.Background()
	old := time.Now().Add(-2 * time.Hour)
	var stale []string
	for _, p := range []string{"data/ab/.tmp-1", "keys/.tmp-2", ".tmp-3", "snapshots/.tmp-4"} {
		p = filepath.Join(b.Location(), p)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		stale = append(stale, p)
	}
	fresh := filepath.Join(b.Location(), "data", "ab", ".tmp-fresh")
	if err := os.WriteFile(fresh, []byte("being written"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ft := range []backend.FileType{backend.PackFile, backend.KeyFile, backend.SnapshotFile, backend.ConfigFile} {
		if err := b.List(ctx, ft, func(fi backend.FileInfo) error {
			t.Errorf("List %s reports %s", ft, fi.Name)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.CleanTemp(context.Background(), time.Hour)
	if err != nil || n != len(stale) {
		t.Errorf("CleanTemp = %d, %v; want %d, nil", n, err, len(stale))
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale %s not removed", p)
		}
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("CleanTemp removed a recent temporary file: %v", err)
	}
}

func TestInvalidHandles(t *testing.T) {
	b := newTestBackend(t)
	ctx := context.Background()
	for _, h := range []backend.Handle{
		{Type: backend.KeyFile, Name: ""},
		{Type: backend.KeyFile, Name: ".."},
		{Type: backend.KeyFile, Name: "../config"},
		{Type: backend.IndexFile, Name: "a/b"},
		{Type: backend.SnapshotFile, Name: ".tmp-123"},
		{Type: backend.PackFile, Name: "a"},
		{Type: backend.PackFile, Name: "ZZ00"},
		{Type: backend.PackFile, Name: "AB00"},
		{Type: "../etc", Name: "x"},
		{Type: "", Name: "x"},
	} {
		if err := b.Save(ctx, h, bytes.NewReader([]byte("x")), 1); err == nil {
			t.Errorf("Save %+v: no error", h)
		}
		if _, err := b.Stat(ctx, h); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat %+v: %v, want an invalid-name error", h, err)
		}
	}
	if tmps := tempFiles(t, b.Location()); len(tmps) != 0 {
		t.Errorf("temporary files left behind: %v", tmps)
	}
	if err := b.List(ctx, "bogus", func(backend.FileInfo) error { return nil }); err == nil {
		t.Error("List of an unknown type: no error")
	}
}

// The first Saves into a pack subdirectory make it, also when several race
// to (two backups writing at once).
func TestSaveMakesPackDir(t *testing.T) {
	b := newTestBackend(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			h := backend.Handle{Type: backend.PackFile, Name: fmt.Sprintf("9a%02x", i)}
			errs[i] = b.Save(ctx, h, bytes.NewReader([]byte("data")), 4)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Save %d into a new directory: %v", i, err)
		}
	}
	n := 0
	if err := b.List(ctx, backend.PackFile, func(backend.FileInfo) error { n++; return nil }); err != nil || n != len(errs) {
		t.Errorf("List after the racing Saves: %d packs, %v; want %d", n, err, len(errs))
	}
}

// FuzzPath: no accepted handle names a file outside its type's directory
// or one that List would skip.
func FuzzPath(f *testing.F) {
	for _, s := range []string{"abcd", "..", "../x", "a/b", ".tmp-1", "ab", "000000010000000000000001"} {
		f.Add("data", s)
		f.Add("keys", s)
	}
	f.Add("config", "anything")
	b := &Backend{dir: "/repo"}
	f.Fuzz(func(t *testing.T, typ, name string) {
		h := backend.Handle{Type: backend.FileType(typ), Name: name}
		p, err := b.path(h)
		if err != nil {
			return
		}
		var want string
		switch h.Type {
		case backend.ConfigFile:
			want = "/repo/config"
		case backend.PackFile:
			want = filepath.Join("/repo/data", name[:2], name)
		default:
			want = filepath.Join("/repo", typ, name)
		}
		if p != want || filepath.Base(p) != filepath.Base(want) || strings.HasPrefix(filepath.Base(p), tempPrefix) {
			t.Errorf("path(%+v) = %q, want %q", h, p, want)
		}
		if h.Type != backend.ConfigFile && (filepath.Base(p) != name || filepath.Clean(p) != p) {
			t.Errorf("path(%+v) = %q: the name is not a single path element", h, p)
		}
	})
}

// SaveDeferred stores as Save does, never replacing an object, and
// SyncNames syncs each directory once (packs of several directories, WAL).
func TestSaveDeferred(t *testing.T) {
	ctx := context.Background()
	b, err := Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	var hs []backend.Handle
	for i := range 3 {
		for _, h := range []backend.Handle{
			{Type: backend.WALFile, Name: fmt.Sprintf("00000001000000000000000%d", i)},
			{Type: backend.PackFile, Name: strings.Repeat(fmt.Sprint(i), 64)},
		} {
			data := []byte(h.Name)
			if err := b.SaveDeferred(ctx, h, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
	}
	if err := b.SyncNames(ctx, hs); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		got, err := backend.ReadAll(ctx, b, h, 1<<10)
		if err != nil || string(got) != h.Name {
			t.Fatalf("%s: %q, %v", h, got, err)
		}
	}
	if err := b.SaveDeferred(ctx, hs[0], bytes.NewReader([]byte("other")), 5); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("SaveDeferred over an object: %v", err)
	}
}
