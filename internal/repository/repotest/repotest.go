// Package repotest creates repositories for the unit tests of other
// packages: on an in-memory backend unless the test gives one, with the
// cheapest key derivation and small packs and chunks, so that a few
// megabytes of test data make many packs and blobs.
package repotest

import (
	"context"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/tree"
)

// Password opens the repositories New creates.
const Password = "pw"

// An Option changes what New creates.
type Option func(*config)

type config struct {
	be   backend.Backend
	lock *repository.ObjectLock
}

// Backend creates the repository on be instead of a new in-memory backend.
func Backend(be backend.Backend) Option { return func(c *config) { c.be = be } }

// ObjectLock creates the repository with this Object Lock policy; the
// backend must be a backend.Locker with Object Lock on (locktest.New(true)).
func ObjectLock(l *repository.ObjectLock) Option { return func(c *config) { c.lock = l } }

// New creates a repository opened by Password, with 1 MiB packs and chunks
// of 64 KiB to 512 KiB (128 KiB on average), or fails t.
func New(t testing.TB, opts ...Option) *repository.Repository {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.be == nil {
		c.be = mem.New()
	}
	r, err := repository.Init(context.Background(), c.be, []byte(Password), repository.InitOptions{
		Options:    options(),
		PackSize:   1 << 20,
		Chunker:    repository.ChunkerSizes{Min: 64 << 10, Avg: 128 << 10, Max: 512 << 10},
		ObjectLock: c.lock,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Open opens the repository New created on be, as a new process would,
// and loads its index, or fails t.
func Open(t testing.TB, be backend.Backend) *repository.Repository {
	t.Helper()
	ctx := context.Background()
	r, err := repository.Open(ctx, be, []byte(Password), options())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// OpenCached is Open with the index in a local cache file under dir
// (built if there is none), whatever the repository's size.
func OpenCached(t testing.TB, be backend.Backend, dir string) *repository.Repository {
	t.Helper()
	ctx := context.Background()
	o := options()
	o.IndexCacheDir, o.IndexCacheMinBlobs = dir, 1
	r, err := repository.Open(ctx, be, []byte(Password), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if r.IndexCache() == nil {
		t.Fatal("the index cache was not used")
	}
	return r
}

// options makes key slots cheap to derive: tests add and open many.
func options() repository.Options {
	kdf := crypto.FastKDFParamsForTests()
	return repository.Options{KDF: &kdf}
}

// SaveTree saves a tree of the given nodes (sorted first) into r and
// returns its ID: for tests that build snapshots by hand.
func SaveTree(t testing.TB, r *repository.Repository, nodes ...*tree.Node) id.ID {
	t.Helper()
	tr := &tree.Tree{Nodes: nodes}
	tr.Sort()
	tid, err := tree.Save(context.Background(), r, tr)
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

// Dir is a directory node whose contents are the tree sub.
func Dir(name string, sub id.ID) *tree.Node {
	return &tree.Node{Name: name, Type: tree.Dir, Subtree: &sub}
}

// StoreAgain saves every blob from's index lists once more through to, a
// second handle on the same storage opened before they were stored, and
// flushes it: the state two concurrent backups of the same data leave,
// every blob in two packs.
func StoreAgain(t testing.TB, from, to *repository.Repository) {
	t.Helper()
	ctx := context.Background()
	from.Index().Each(func(e index.Entry) bool {
		plain, err := from.LoadBlob(ctx, e.ID, nil)
		if err == nil {
			_, err = to.SaveBlobWithID(ctx, e.Type, e.ID, plain)
		}
		if err != nil {
			t.Fatal(err)
		}
		return true
	})
	if err := to.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// OnlyIn lists what below tree root (the tree itself, its subtrees and
// its files' blobs) r holds in none but the given packs, by path: for the
// tests of prune's deletion candidates, whose packs a writer must not
// reference without storing them again.
func OnlyIn(t testing.TB, r *repository.Repository, root id.ID, packs []id.ID) []string {
	t.Helper()
	in := make(map[id.ID]bool, len(packs))
	for _, p := range packs {
		in[p] = true
	}
	only := func(bid id.ID) bool {
		for _, e := range r.Index().Locations(bid) {
			if !in[e.Pack] {
				return false
			}
		}
		return true
	}
	var out []string
	var walk func(tid id.ID, path string)
	walk = func(tid id.ID, path string) {
		if only(tid) {
			out = append(out, path+"/ (tree "+tid.Short()+")")
		}
		tr, err := tree.Load(context.Background(), r, tid)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tr.Nodes {
			for _, bid := range n.Content {
				if only(bid) {
					out = append(out, path+"/"+n.Name+" (blob "+bid.Short()+")")
				}
			}
			if n.Subtree != nil {
				walk(*n.Subtree, path+"/"+n.Name)
			}
		}
	}
	walk(root, "")
	return out
}
