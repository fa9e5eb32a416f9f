package archiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/chunker"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/tree"
)

// A backup cancelled while directory walkers are still listing returns the
// cancellation: the walkers must not send files to readers that are gone
// (this panicked with "send on closed channel").
func TestCancelWhileWalking(t *testing.T) {
	ctx := context.Background()
	kdf := crypto.FastKDFParamsForTests()
	repo, err := repository.Init(ctx, mem.New(), []byte("pw"), repository.InitOptions{Options: repository.Options{KDF: &kdf}})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for d := range 200 {
		dir := filepath.Join(src, fmt.Sprintf("d%03d", d%20), fmt.Sprintf("e%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 10 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", f)), []byte(dir+fmt.Sprint(f)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 12 {
		cctx, cancel := context.WithCancelCause(ctx)
		stop := errors.New("stop")
		// A walker two levels down cancels the backup and lingers before
		// saving its next entry, so the backup has returned by then.
		a := New(repo, Options{Exclude: func(rel string, _ fs.FileInfo) bool {
			if filepath.Base(rel) == "f00" && strings.Contains(rel, "e000") {
				cancel(stop)
				time.Sleep(30 * time.Millisecond)
			}
			return false
		}})
		_, err := a.SnapshotDir(cctx, src)
		cancel(nil)
		if !errors.Is(err, stop) {
			t.Fatalf("run %d: backup returned %v, want the cancellation", i, err)
		}
	}
}

// An unchanged directory reuses its parent snapshot's tree; a change deep
// down gives new trees on the path to it and only there.
func TestUnchangedTreesReused(t *testing.T) {
	ctx := context.Background()
	kdf := crypto.FastKDFParamsForTests()
	repo, err := repository.Init(ctx, mem.New(), []byte("pw"), repository.InitOptions{Options: repository.Options{KDF: &kdf}})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for _, d := range []string{"a/deep", "b"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, d, "f"), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	counted := &treeCounter{Repository: repo}
	backup := func(parent *id.ID) id.ID {
		t.Helper()
		counted.trees.Store(0)
		root, err := New(counted, Options{Parent: parent}).SnapshotDir(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return root
	}
	sub := func(tid id.ID, name string) *tree.Node {
		t.Helper()
		tr, err := tree.Load(ctx, repo, tid)
		if err != nil {
			t.Fatal(err)
		}
		n := tr.Find(name)
		if n == nil {
			t.Fatalf("tree %s has no %s", tid.Short(), name)
		}
		return n
	}
	first := backup(nil)
	if again := backup(&first); again != first {
		t.Fatalf("unchanged re-backup made root tree %s, want the parent's %s", again.Short(), first.Short())
	}
	if n := counted.trees.Load(); n != 0 {
		t.Errorf("unchanged re-backup saved %d trees, want none: the parent's are reused", n)
	}
	if err := os.Chmod(filepath.Join(src, "a/deep/f"), 0o600); err != nil {
		t.Fatal(err)
	}
	third := backup(&first)
	if third == first {
		t.Fatal("a mode change deep down kept the root tree")
	}
	if n := counted.trees.Load(); n != 3 {
		t.Errorf("after a change in a/deep, %d trees saved, want 3 (root, a, a/deep)", n)
	}
	if *sub(third, "b").Subtree != *sub(first, "b").Subtree {
		t.Error("the untouched directory b got a new tree")
	}
	deep := sub(*sub(third, "a").Subtree, "deep")
	if deep.Subtree == nil || *deep.Subtree == *sub(*sub(first, "a").Subtree, "deep").Subtree {
		t.Fatal("the changed directory a/deep kept its tree")
	}
	if got := sub(*deep.Subtree, "f").Mode.Perm(); got != 0o600 {
		t.Errorf("a/deep/f stored with mode %v, want 0600", got)
	}
}

// treeCounter counts the tree blobs an archiver saves.
type treeCounter struct {
	*repository.Repository
	trees atomic.Int64 // finishDir saves trees from several goroutines
}

func (c *treeCounter) SaveBlob(ctx context.Context, t index.BlobType, data []byte) (id.ID, bool, error) {
	if t == index.TreeBlob {
		c.trees.Add(1)
	}
	return c.Repository.SaveBlob(ctx, t, data)
}

// A file that grows (or shrinks) between the directory walk's lstat and
// the read records the size it was read at, so that its content adds up
// to its size and it restores: a PostgreSQL relation file extended during
// a base backup was stored with the lstat size and 16 KiB more content,
// and the restore refused it ("content adds up to ...").
func TestFileChangedBeforeRead(t *testing.T) {
	t.Run("content-defined", func(t *testing.T) { testFileChangedBeforeRead(t, nil) })
	t.Run("fixed, in runs", func(t *testing.T) {
		testFileChangedBeforeRead(t, func(_ string, rd io.Reader) chunker.Splitter { return chunker.NewFixed(rd, 32<<10) })
	})
}

func testFileChangedBeforeRead(t *testing.T, split func(string, io.Reader) chunker.Splitter) {
	repo := repotest.New(t)
	src := t.TempDir()
	grow, shrink := filepath.Join(src, "grows"), filepath.Join(src, "shrinks")
	for _, p := range []string{grow, shrink} {
		if err := os.WriteFile(p, make([]byte, 3<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Exclude is asked right after the walk's lstat, before the file is
	// opened: change the files there.
	a := New(repo, Options{Exclude: func(rel string, _ fs.FileInfo) bool {
		var err error
		switch rel {
		case "grows":
			var f *os.File
			if f, err = os.OpenFile(grow, os.O_APPEND|os.O_WRONLY, 0); err == nil {
				_, err = f.Write(make([]byte, 16<<10))
				f.Close()
			}
		case "shrinks":
			err = os.Truncate(shrink, 1<<20)
		}
		if err != nil {
			t.Error(err)
		}
		return false
	}, Splitter: split})
	tr := snapshotTree(t, repo, a, src)
	for name, want := range map[string]uint64{"grows": 3<<20 + 16<<10, "shrinks": 1 << 20} {
		n := tr.Find(name)
		var sum uint64
		for _, bid := range n.Content {
			e, ok := repo.Index().Lookup(bid)
			if !ok {
				t.Fatalf("%s: blob %s not indexed", name, bid.Short())
			}
			sum += uint64(e.RawLength)
		}
		if n.Size != want || sum != want {
			t.Errorf("%s: size %d, content %d bytes, want both %d", name, n.Size, sum, want)
		}
	}
}

// A file whose owner's user or group name is not UTF-8 (a Latin-1 name in
// the user database) is backed up with its numeric ids; the name would not
// read back from the tree's JSON, and failed the whole backup.
func TestOwnerNameNotUTF8(t *testing.T) {
	repo := repotest.New(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := New(repo, Options{})
	a.ids.lookupUser = func(string) (string, error) { return "j\xe9r\xf4me", nil }
	a.ids.lookupGroup = func(string) (string, error) { return "compta", nil }
	tr := snapshotTree(t, repo, a, src)
	n := tr.Find("f")
	if n == nil || n.User != "" || n.Group != "compta" || n.UID != uint32(os.Getuid()) {
		t.Fatalf("node %+v", n)
	}
}

// snapshotTree backs up src with a and returns its root tree, flushed.
func snapshotTree(t *testing.T, repo *repository.Repository, a *Archiver, src string) *tree.Tree {
	t.Helper()
	ctx := context.Background()
	root, err := a.SnapshotDir(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := tree.Load(ctx, repo, root)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// Fixed-size chunks go to the workers in runs that share a buffer
// (split), and a file of one run is saved by its reader: every chunk is
// still its own blob, in file order, seen by OnChunk at its offset, and
// the buffers come back for reuse. Both kinds of buffer are tried: mapped
// ones of the largest chunk's size, and the heap buffers made when that
// is smaller than a run.
func TestFixedChunksInRuns(t *testing.T) {
	for _, p := range []chunker.Params{chunker.DefaultParams(), {Min: 64 << 10, Avg: 128 << 10, Max: 256 << 10}} {
		t.Run(fmt.Sprintf("max=%d", p.Max), func(t *testing.T) {
			repo := repotest.New(t)
			src := t.TempDir()
			data := make([]byte, 5*batchBytes/2+5000) // runs, and a short last chunk
			for i := range data {
				data[i] = byte(i*7 + i>>13) // no two 8 KiB chunks alike
			}
			files := map[string][]byte{"a": data, "b": data, "c": data, "one-run": data[:20000]}
			for name, b := range files {
				if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			const size = 8 << 10
			var mu sync.Mutex
			seen := map[string][]int64{}
			a := New(repo, Options{
				Chunker: p,
				Workers: 3,
				Splitter: func(_ string, rd io.Reader) chunker.Splitter {
					return chunker.NewFixed(rd, size)
				},
				OnChunk: func(p string, off int64, chunk []byte) {
					if !bytes.Equal(chunk, data[off:off+int64(len(chunk))]) {
						t.Errorf("%s: chunk at %d is not the file's bytes there", p, off)
					}
					mu.Lock()
					seen[p] = append(seen[p], off)
					mu.Unlock()
				},
			})
			tr := snapshotTree(t, repo, a, src)
			for name, data := range files {
				n := tr.Find(name)
				want := (len(data) + size - 1) / size
				if len(n.Content) != want || len(seen[name]) != want {
					t.Fatalf("%s: %d blobs, %d chunks seen, want %d", name, len(n.Content), len(seen[name]), want)
				}
				for i, bid := range n.Content {
					if seen[name][i] != int64(i*size) {
						t.Fatalf("%s: chunk %d seen at %d", name, i, seen[name][i])
					}
					got, err := repo.LoadBlob(context.Background(), bid, nil)
					if err != nil {
						t.Fatal(err)
					}
					if want := data[i*size : min((i+1)*size, len(data))]; !bytes.Equal(got, want) {
						t.Fatalf("%s: blob %d holds other bytes", name, i)
					}
				}
			}
			if got, want := len(a.bufs), a.opt.Workers+a.opt.Readers; got != want {
				t.Errorf("%d chunk buffers back in the pool, want %d", got, want)
			}
		})
	}
}

// A read that fails in the middle of a run fails that file alone: the
// chunks of the run already read are dropped with their buffer, which
// goes back to the pool, and the other files are saved.
func TestReadFailsInRun(t *testing.T) {
	repo := repotest.New(t)
	src := t.TempDir()
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*5 + i>>12)
	}
	for _, name := range []string{"bad", "good"} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := New(repo, Options{Splitter: func(p string, rd io.Reader) chunker.Splitter {
		if p == "bad" {
			rd = io.MultiReader(io.LimitReader(rd, batchBytes+100<<10), iotest.ErrReader(errors.New("disk on fire")))
		}
		return chunker.NewFixed(rd, 8<<10)
	}})
	ctx := context.Background()
	root, err := a.SnapshotDir(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	errs := a.Errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Err, "disk on fire") || !strings.HasSuffix(errs[0].Path, "bad") {
		t.Fatalf("errors %v, want the read of bad", errs)
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := tree.Load(ctx, repo, root)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Find("bad") != nil {
		t.Error("the file whose read failed is in the tree")
	}
	n := tr.Find("good")
	if n == nil || len(n.Content) != len(data)/(8<<10) {
		t.Fatalf("good: %+v", n)
	}
	if got, want := len(a.bufs), a.opt.Workers+a.opt.Readers; got != want {
		t.Errorf("%d chunk buffers back in the pool, want %d", got, want)
	}
}
