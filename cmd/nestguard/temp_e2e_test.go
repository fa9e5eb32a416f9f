package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStaleTempRemoved: temporary files left by a killed writer (older
// than a day) are removed, and reported, by every writing command, not
// only by a file backup; a recent one, possibly still being written, is
// kept. (S3's incomplete multipart uploads: TestCleanTemp in
// internal/backend/s3.)
func TestStaleTempRemoved(t *testing.T) {
	t.Parallel()
	src := newEnv(t)
	src.must("init")
	tree := filepath.Join(src.dir, "src")
	writeTree(t, tree, 71, 3, 10_000)
	src.must("backup", tree)

	dst := newEnv(t)
	dst.must("init")
	dst.extraEnv = append(dst.extraEnv, "NESTGUARD_FROM_PASSWORD="+src.pass)
	place := func() (stale []string, fresh string) {
		t.Helper()
		old := time.Now().Add(-25 * time.Hour)
		for _, p := range []string{".tmp-123", "data/ab/.tmp-456", "snapshots/.tmp-789"} {
			p = filepath.Join(dst.repo, p)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("left by a killed backup"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
			stale = append(stale, p)
		}
		fresh = filepath.Join(dst.repo, "index", ".tmp-fresh")
		if err := os.WriteFile(fresh, []byte("being written"), 0o600); err != nil {
			t.Fatal(err)
		}
		return stale, fresh
	}
	check := func(what string, r result, stale []string, fresh string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", what, r.code, r.stderr)
		}
		for _, p := range stale {
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: stale %s not removed", what, p)
			}
		}
		if _, err := os.Stat(fresh); err != nil {
			t.Errorf("%s removed a recent temporary file: %v", what, err)
		}
		if !strings.Contains(r.stderr, "removed temporary data left by an interrupted command") || !strings.Contains(r.stderr, "count=3") {
			t.Errorf("%s did not report the removal: %s", what, r.stderr)
		}
	}
	stale, fresh := place()
	check("copy", dst.run("copy", "--from", src.repo, "latest"), stale, fresh)
	stale, fresh = place()
	check("hold add", dst.run("hold", "add", "latest", "--case", "C", "--reason", "r", "--record-only"), stale, fresh)
	stale, fresh = place()
	check("backup", dst.run("backup", tree), stale, fresh)
}
