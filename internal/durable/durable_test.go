package durable

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Sync, and the fsync of every entry it falls back to, pass over a tree
// of files (one write-only), directories, a symlink and a FIFO, and fail
// naming a directory that is not there.
func TestSync(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "made", "target")
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"a/f": 0o600, "a/b/wo": 0o200, "ro": 0o400} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/nonexistent", filepath.Join(dir, "a", "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Sync(ctx, dir, filepath.Join(dir, "a"), dir); err != nil {
		t.Fatal(err)
	}
	if err := syncEach(ctx, dir); err != nil {
		t.Fatalf("fsync of each entry: %v", err)
	}
	missing := filepath.Join(dir, "missing")
	for name, f := range map[string]func() error{
		"Sync":     func() error { return Sync(ctx, dir, missing) },
		"syncEach": func() error { return syncEach(ctx, missing) },
	} {
		if err := f(); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("%s of a directory that is not there: %v", name, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := syncEach(cancelled, dir); err == nil {
		t.Error("syncEach went on after its context was cancelled")
	}
}
