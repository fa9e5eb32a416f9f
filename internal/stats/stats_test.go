package stats

import (
	"context"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// TestLogicalSizeCountsEveryPlace: a directory stored once but found at
// two paths, and in two snapshots, counts at each place: the logical size
// is what restoring every snapshot writes.
func TestLogicalSizeCountsEveryPlace(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	save := func(nodes ...*tree.Node) id.ID { return repotest.SaveTree(t, repo, nodes...) }
	file := func(name string, size uint64) *tree.Node { return &tree.Node{Name: name, Type: tree.File, Size: size} }
	dir := repotest.Dir
	leaf := save(file("a", 10), file("b", 5))
	mid := save(dir("x", leaf), dir("y", leaf), file("c", 1))
	root1 := save(dir("m", mid), dir("n", leaf))
	root2 := save(dir("m", mid), file("d", 100))
	for _, root := range []id.ID{root1, root2} {
		if err := snapshot.Save(ctx, repo, &snapshot.Snapshot{Time: time.Now(), Kind: snapshot.KindFiles, Tree: root}); err != nil {
			t.Fatal(err)
		}
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := Compute(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	// root1: mid (15+15+1 bytes, 5 files) and leaf (15, 2); root2: mid
	// and d.
	if st.Snapshots != 2 || st.LogicalSize != 31+15+31+100 || st.Files != 5+2+5+1 {
		t.Errorf("got %d snapshots, %d bytes in %d files; want 2, 177, 13", st.Snapshots, st.LogicalSize, st.Files)
	}
}
