package archiver

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/tree"
)

// Swaps by someone who can write to a backed-up directory, between the
// listing and the read (found by a hostile test). The walk opens every
// entry relative to the directory it listed, never through a symbolic
// link: what it saves under a name is what that name held, never the
// file a link put in its place points to.

// swapEnv is a source directory d holding file f and directory sub
// (holding file g), and, outside it, a "secret" directory holding files
// of the same names with other content.
type swapEnv struct {
	src, d, secret string
	f, g, secretF  []byte
}

func newSwapEnv(t *testing.T, size int) *swapEnv {
	e := &swapEnv{src: t.TempDir(), secret: t.TempDir(), f: randomBytes(size, 1), g: randomBytes(size, 2), secretF: randomBytes(size, 3)}
	e.d = filepath.Join(e.src, "d")
	for _, dir := range []string{filepath.Join(e.d, "sub"), filepath.Join(e.secret, "sub")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, b := range map[string][]byte{
		filepath.Join(e.d, "f"): e.f, filepath.Join(e.d, "sub", "g"): e.g,
		filepath.Join(e.secret, "f"): e.secretF, filepath.Join(e.secret, "sub", "g"): e.secretF,
	} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// once runs fn the first time the returned function is called with
// a path ending in suffix.
func once(t *testing.T, suffix string, fn func() error) func(string) {
	var o sync.Once
	return func(p string) {
		if strings.HasSuffix(p, suffix) {
			o.Do(func() {
				if err := fn(); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

func errorsNaming(a *Archiver, suffix, text string) bool {
	for _, e := range a.Errors() {
		if strings.HasSuffix(e.Path, suffix) && strings.Contains(e.Err, text) {
			return true
		}
	}
	return false
}

// TestSwapFileForSymlink: a file replaced by a symbolic link to a secret
// before it is opened is not read through the link: reported, and the
// secret's content is nowhere in the snapshot.
func TestSwapFileForSymlink(t *testing.T) {
	for _, size := range []int{100, 3 * testParams.Min} { // a small file's path and a large one's
		e := newSwapEnv(t, size)
		repo := repotest.New(t)
		a := New(repo, Options{Chunker: testParams})
		a.beforeOpen = once(t, "/d/f", func() error {
			if err := os.Remove(filepath.Join(e.d, "f")); err != nil {
				return err
			}
			return os.Symlink(filepath.Join(e.secret, "f"), filepath.Join(e.d, "f"))
		})
		tr := snapshotTree(t, repo, a, e.src)
		d := subtree(t, repo, tr, "d")
		if n := d.Find("f"); n != nil {
			if n.Type == tree.File && bytes.Equal(content(t, repo, n), e.secretF) {
				t.Fatalf("size %d: the symbolic link's target was saved as d/f", size)
			}
		}
		if !errorsNaming(a, "/d/f", "symbolic link") {
			t.Errorf("size %d: the swap is not reported: %v", size, a.Errors())
		}
	}
}

// TestSwapFileForFIFO: a file replaced by a FIFO before it is opened does
// not stall the backup (an open for reading waits for a writer): it is
// reported as no longer a regular file.
func TestSwapFileForFIFO(t *testing.T) {
	e := newSwapEnv(t, 100)
	repo := repotest.New(t)
	a := New(repo, Options{Chunker: testParams})
	a.beforeOpen = once(t, "/d/f", func() error {
		if err := os.Remove(filepath.Join(e.d, "f")); err != nil {
			return err
		}
		return syscall.Mkfifo(filepath.Join(e.d, "f"), 0o600)
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		snapshotTree(t, repo, a, e.src)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		w, err := os.OpenFile(filepath.Join(e.d, "f"), os.O_WRONLY, 0) // let it go
		if err == nil {
			w.Close()
		}
		t.Fatal("the backup waited on the FIFO")
	}
	if !errorsNaming(a, "/d/f", "no longer a regular file") {
		t.Errorf("the swap is not reported: %v", a.Errors())
	}
}

// TestSwapParentForSymlink: the directory of a listed file renamed away
// and a symbolic link to the secret directory put in its place before the
// file is opened: the file read is the one listed (in the directory now
// renamed), not the secret one of the same name.
func TestSwapParentForSymlink(t *testing.T) {
	for _, size := range []int{100, 3 * testParams.Min} {
		e := newSwapEnv(t, size)
		repo := repotest.New(t)
		a := New(repo, Options{Chunker: testParams})
		a.beforeOpen = once(t, "/d/f", func() error {
			if err := os.Rename(e.d, e.d+".away"); err != nil {
				return err
			}
			return os.Symlink(e.secret, e.d)
		})
		tr := snapshotTree(t, repo, a, e.src)
		n := subtree(t, repo, tr, "d").Find("f")
		if n == nil || n.Type != tree.File {
			t.Fatalf("size %d: d/f not saved as a file: %+v (errors %v)", size, n, a.Errors())
		}
		if got := content(t, repo, n); !bytes.Equal(got, e.f) {
			t.Fatalf("size %d: d/f holds other content than the file listed (the secret's: %v)", size, bytes.Equal(got, e.secretF))
		}
	}
}

// TestSwapDirForSymlink: a listed subdirectory replaced by a symbolic link
// to the secret directory before it is walked is not followed: reported,
// and nothing of the secret directory is saved under its name.
func TestSwapDirForSymlink(t *testing.T) {
	e := newSwapEnv(t, 100)
	repo := repotest.New(t)
	var o sync.Once
	a := New(repo, Options{Chunker: testParams, Exclude: func(rel string, _ fs.FileInfo) bool {
		if rel == "d/sub" {
			o.Do(func() {
				if err := os.Rename(filepath.Join(e.d, "sub"), filepath.Join(e.src, "sub.away")); err != nil {
					t.Error(err)
				}
				if err := os.Symlink(filepath.Join(e.secret, "sub"), filepath.Join(e.d, "sub")); err != nil {
					t.Error(err)
				}
			})
		}
		return false
	}})
	tr := snapshotTree(t, repo, a, e.src)
	if sub := subtree(t, repo, tr, "d").Find("sub"); sub != nil && sub.Type == tree.Dir && sub.Subtree != nil {
		st, err := tree.Load(context.Background(), repo, *sub.Subtree)
		if err != nil {
			t.Fatal(err)
		}
		if g := st.Find("g"); g != nil && bytes.Equal(content(t, repo, g), e.secretF) {
			t.Fatal("the secret directory's file was saved as d/sub/g")
		}
	}
	if !errorsNaming(a, "/d/sub", "no longer a directory") {
		t.Errorf("the swap is not reported: %v", a.Errors())
	}
}

// subtree loads the tree of directory name in tr.
func subtree(t *testing.T, repo interface {
	tree.BlobStore
}, tr *tree.Tree, name string) *tree.Tree {
	t.Helper()
	n := tr.Find(name)
	if n == nil || n.Type != tree.Dir || n.Subtree == nil {
		t.Fatalf("%s is not a directory of the snapshot: %+v", name, n)
	}
	st, err := tree.Load(context.Background(), repo, *n.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
