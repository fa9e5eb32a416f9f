package archiver

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadDirRenamed: a directory renamed away and back again and again
// while it is listed: every listing that opened it states every entry
// (relative to the open directory), where stating by path lost the
// entries stated while it was away (found by a hostile test: a backup
// left hundreds of files out, exit 0).
func TestReadDirRenamed(t *testing.T) {
	base := t.TempDir()
	d, away := filepath.Join(base, "d"), filepath.Join(base, "away")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 500
	var want []string
	for i := range n {
		name := fmt.Sprintf("f%04d", i)
		want = append(want, name)
		if err := os.WriteFile(filepath.Join(d, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			if err := os.Rename(d, away); err != nil {
				t.Error(err)
				return
			}
			if err := os.Rename(away, d); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(20 * time.Microsecond) // in place for a while: opens succeed too
		}
	})
	listed := 0
	for i := 0; i < 300 || (listed == 0 && i < 30000); i++ {
		h, err := openDir(nil, "", d)
		if err != nil {
			continue // renamed away when opened
		}
		es, err := readDir(h, d)
		h.unref()
		if err != nil {
			t.Fatal(err)
		}
		listed++
		var got []string
		for _, e := range es {
			if e.err != nil {
				t.Fatalf("entry %s: %v", e.name, e.err)
			}
			if e.fi.Name() != e.name || !e.fi.Mode().IsRegular() {
				t.Fatalf("entry %s: %v %v", e.name, e.fi.Name(), e.fi.Mode())
			}
			got = append(got, e.name)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("listed %d entries, want %d, sorted", len(got), len(want))
		}
	}
	stop.Store(true)
	wg.Wait()
	if listed == 0 {
		t.Fatal("the directory was never opened")
	}
}

// TestStatInfo: readDir's file information is os.Lstat's.
func TestStatInfo(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("abc"), 0o640|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "f"), 0o4750); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "d"), 0o1777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	h, err := openDir(nil, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer h.unref()
	es, err := readDir(h, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		want, err := os.Lstat(filepath.Join(dir, e.name))
		if err != nil {
			t.Fatal(err)
		}
		if e.fi.Mode() != want.Mode() || e.fi.Size() != want.Size() || !e.fi.ModTime().Equal(want.ModTime()) || e.fi.IsDir() != want.IsDir() || e.fi.Name() != want.Name() {
			t.Errorf("%s: %v %d %v, want %v %d %v", e.name, e.fi.Mode(), e.fi.Size(), e.fi.ModTime(), want.Mode(), want.Size(), want.ModTime())
		}
	}
}
