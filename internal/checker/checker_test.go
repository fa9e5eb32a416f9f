package checker

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// TestDamagedPathsInSharedTrees: a damaged directory shared by two
// snapshots, at different paths and twice in one of them, is named at
// every path in each snapshot; an undamaged snapshot sharing none of it is
// not reported.
func TestDamagedPathsInSharedTrees(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	save := func(nodes ...*tree.Node) id.ID { return repotest.SaveTree(t, repo, nodes...) }
	good, _, err := repo.SaveBlob(ctx, index.DataBlob, []byte("intact"))
	if err != nil {
		t.Fatal(err)
	}
	gone := id.Hash([]byte("never stored"))
	file := func(name string, b id.ID) *tree.Node {
		return &tree.Node{Name: name, Type: tree.File, Size: 6, Content: []id.ID{b}}
	}
	dir := repotest.Dir
	lost := id.Hash([]byte("no such tree"))
	shared := save(file("bad", gone), file("ok", good), dir("lost", lost))
	root1 := save(dir("a", shared), dir("b", save(dir("c", shared))), file("top", good))
	root2 := save(dir("x", shared))
	root3 := save(file("top", good))
	var ids []string
	for i, root := range []id.ID{root1, root2, root3} {
		sn := &snapshot.Snapshot{Time: time.Unix(int64(i), 0), Kind: snapshot.KindFiles, Tree: root}
		if err := snapshot.Save(ctx, repo, sn); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sn.ID.String())
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := New(repo, Options{}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		ids[0]: {"/a/bad", "/a/lost", "/b/c/bad", "/b/c/lost"},
		ids[1]: {"/x/bad", "/x/lost"},
	}
	if len(rep.DamagedSnapshots) != len(want) {
		t.Fatalf("%d damaged snapshots, want %d: %+v", len(rep.DamagedSnapshots), len(want), rep.DamagedSnapshots)
	}
	for _, s := range rep.DamagedSnapshots {
		files := slices.Sorted(slices.Values(s.Files))
		if !slices.Equal(files, want[s.ID]) {
			t.Errorf("snapshot %s: damaged files %v, want %v", s.ID[:8], files, want[s.ID])
		}
		if len(s.Errors) != len(want[s.ID])/2 {
			t.Errorf("snapshot %s: errors %v, want one per lost directory", s.ID[:8], s.Errors)
		}
		for _, e := range s.Errors {
			if !slices.ContainsFunc([]string{"/: a: lost: directory listing lost: ", "/: b: c: lost: directory listing lost: ", "/: x: lost: directory listing lost: "},
				func(p string) bool { return len(e) > len(p) && e[:len(p)] == p }) {
				t.Errorf("snapshot %s: error %q", s.ID[:8], e)
			}
		}
	}
}

// TestIndexCacheDamagedAfterOpen: a bucket of the local index cache
// damaged after the repository was opened leaves the check incomplete,
// which it reports as a problem, never as a clean pass (second review:
// the walk over every location ignored the cache's failure).
func TestIndexCacheDamagedAfterOpen(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	repo := repotest.New(t, repotest.Backend(be))
	var nodes []*tree.Node
	for i := range 40 {
		b, _, err := repo.SaveBlob(ctx, index.DataBlob, []byte(fmt.Sprintf("file %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &tree.Node{Name: fmt.Sprint(i), Type: tree.File, Size: uint64(len(fmt.Sprintf("file %d", i))), Content: []id.ID{b}})
	}
	sn := &snapshot.Snapshot{Time: time.Unix(1, 0), Kind: snapshot.KindFiles, Tree: repotest.SaveTree(t, repo, nodes...)}
	if err := snapshot.Save(ctx, repo, sn); err != nil {
		t.Fatal(err)
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r := repotest.OpenCached(t, be, t.TempDir())
	// Byte 128: bucket 0's first record, or its tag when it is empty.
	f, err := os.OpenFile(r.IndexCache().Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 128); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, 128); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rep, err := New(r, Options{ReadData: true, Percent: 100}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !slices.ContainsFunc(rep.Problems, func(p Problem) bool {
		return p.Object == "index cache" && strings.Contains(p.Error, "could not be read whole")
	}) {
		t.Fatalf("check with a damaged index cache bucket: problems %+v", rep.Problems)
	}
}
