package archiver

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// TestExchangedDirMetadataMatchesContent: two directories exchanged
// (renameat2 RENAME_EXCHANGE) between the parent's listing and their
// walk: each saved directory's mode must be that of the directory whose
// entries it holds (openDir does not compare the directory it opened
// with the one listed, so a 0700 directory's metadata went with a 0755
// one's entries and the other way round: a private directory's files
// restored under a world-readable one).
func TestExchangedDirMetadataMatchesContent(t *testing.T) {
	src := t.TempDir()
	d := filepath.Join(src, "d")
	os.MkdirAll(filepath.Join(d, "priv"), 0o755)
	os.MkdirAll(filepath.Join(d, "pub"), 0o755)
	os.WriteFile(filepath.Join(d, "priv", "secret"), []byte("s"), 0o644)
	os.WriteFile(filepath.Join(d, "pub", "readme"), []byte("r"), 0o644)
	os.Chmod(filepath.Join(d, "priv"), 0o700)
	repo := repotest.New(t)
	var o sync.Once
	a := New(repo, Options{Chunker: testParams, Exclude: func(rel string, _ fs.FileInfo) bool {
		if rel == "d/priv" {
			o.Do(func() {
				if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(d, "priv"), unix.AT_FDCWD, filepath.Join(d, "pub"), unix.RENAME_EXCHANGE); err != nil {
					t.Skipf("renameat2: %v", err)
				}
			})
		}
		return false
	}})
	tr := snapshotTree(t, repo, a, src)
	dt := subtree(t, repo, tr, "d")
	for _, name := range []string{"priv", "pub"} {
		n := dt.Find(name)
		st := subtree(t, repo, dt, name)
		if st.Find("secret") != nil && n.Mode.Perm() != 0o700 {
			t.Errorf("d/%s saved with mode %v holding the 0700 directory's file secret (errors %v)", name, n.Mode.Perm(), a.Errors())
		}
	}
}

// TestDirDeletedSinceListed: a directory deleted between its parent's
// listing and its walk is left out and reported once, as a file deleted
// between the listing and its open is (it was saved as an empty
// directory, a state it never had, with two warnings).
func TestDirDeletedSinceListed(t *testing.T) {
	src := t.TempDir()
	d := filepath.Join(src, "d")
	os.MkdirAll(filepath.Join(d, "gone"), 0o755)
	os.WriteFile(filepath.Join(d, "gone", "f"), []byte("f"), 0o644)
	os.WriteFile(filepath.Join(d, "kept"), []byte("k"), 0o644)
	repo := repotest.New(t)
	a := New(repo, Options{Chunker: testParams, Exclude: func(rel string, _ fs.FileInfo) bool {
		if rel == "d/gone" {
			if err := os.RemoveAll(filepath.Join(d, "gone")); err != nil {
				t.Fatal(err)
			}
		}
		return false
	}})
	tr := snapshotTree(t, repo, a, src)
	dt := subtree(t, repo, tr, "d")
	if dt.Find("gone") != nil || dt.Find("kept") == nil {
		t.Errorf("d holds %v", dt.Nodes)
	}
	if errs := a.Errors(); len(errs) != 1 || errs[0].Path != filepath.Join(d, "gone") {
		t.Errorf("errors %v, want one naming d/gone", errs)
	}
}
