package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestIndexCacheCLI runs backup, prune, verify and restore with the index
// in the local cache (forced for a small repository). The cache must be
// built again after a prune: one that still located the blobs of deleted
// packs would make the last backup skip data the repository lost.
func TestIndexCacheCLI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cache := filepath.Join(e.dir, "cache")
	e.extraEnv = append(e.extraEnv, "NESTGUARD_CACHE_DIR="+cache)
	c := func(args ...string) string {
		t.Helper()
		return e.must(append([]string{"--index-cache-min-blobs", "1"}, args...)...)
	}
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 1, 40, 200_000)
	e.must("init")
	c("backup", src)
	old := filepath.Join(e.dir, "old")
	if err := os.Rename(src, old); err != nil {
		t.Fatal(err)
	}
	writeTree(t, src, 2, 40, 200_000)
	c("backup", src)
	files, err := filepath.Glob(filepath.Join(cache, "*", "index-v1"))
	if err != nil || len(files) != 1 {
		t.Fatalf("index cache files: %v %v, want one", files, err)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("index cache: %v, want mode 0600", err)
	}
	c("forget", "--keep-last", "1")
	if p := e.prune("--index-cache-min-blobs", "1", "--grace", "0"); p.Deleted.Packs == 0 {
		t.Fatalf("prune deleted no pack: %+v", p)
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(old, src); err != nil {
		t.Fatal(err)
	}
	c("backup", src)
	c("verify", "--read-data")
	tgt := filepath.Join(e.dir, "restore")
	c("restore", "latest", "--target", tgt)
	compareTrees(t, src, filepath.Join(tgt, src))
}
