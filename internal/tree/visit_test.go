package tree

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// memStore is an in-memory BlobStore that counts loads and can be made to
// fail or block them.
type memStore struct {
	mu      sync.Mutex
	blobs   map[id.ID][]byte
	loads   map[id.ID]int
	fail    map[id.ID]bool
	delay   time.Duration
	running atomic.Int32
	maxRun  atomic.Int32
}

func newMemStore() *memStore {
	return &memStore{blobs: map[id.ID][]byte{}, loads: map[id.ID]int{}, fail: map[id.ID]bool{}}
}

func (m *memStore) SaveBlob(_ context.Context, _ index.BlobType, data []byte) (id.ID, bool, error) {
	bid := id.Hash(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blobs[bid] = slices.Clone(data)
	return bid, true, nil
}

func (m *memStore) LoadBlob(ctx context.Context, bid id.ID, _ []byte) ([]byte, error) {
	n := m.running.Add(1)
	defer m.running.Add(-1)
	for {
		old := m.maxRun.Load()
		if n <= old || m.maxRun.CompareAndSwap(old, n) {
			break
		}
	}
	if m.delay > 0 {
		select {
		case <-time.After(m.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads[bid]++
	b, ok := m.blobs[bid]
	if !ok || m.fail[bid] {
		return nil, errors.New("no such blob")
	}
	return b, nil
}

// build saves a tree of depth levels with fan subdirectories each and one
// file per directory; name makes the trees of two calls differ.
func build(t *testing.T, s BlobStore, depth, fan int, name string) id.ID {
	t.Helper()
	tr := &Tree{Nodes: []*Node{{Name: name, Type: File, Size: 1}}}
	if depth > 0 {
		for i := range fan {
			sub := build(t, s, depth-1, fan, name)
			tr.Nodes = append(tr.Nodes, &Node{Name: fmt.Sprintf("d%d", i), Type: Dir, Subtree: &sub})
		}
	}
	tr.Sort()
	tid, err := Save(context.Background(), s, tr)
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

func TestVisitorVisitsEachTreeOnce(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	s.delay = time.Millisecond
	// Every subdirectory of one level is the same tree: 4 distinct trees
	// per root, 1+3+9+27 paths.
	a := build(t, s, 3, 3, "a")
	b := build(t, s, 3, 3, "b")
	var mu sync.Mutex
	visited := map[id.ID]int{}
	v := Visitor[struct{}]{Workers: 3, Visit: func(_ context.Context, tr *Tree, _ struct{}) (func(*Node) struct{}, error) {
		mu.Lock()
		visited[tr.ID]++
		mu.Unlock()
		return nil, nil
	}}
	if err := v.Run(ctx, s, Roots(a, b, a)); err != nil {
		t.Fatal(err)
	}
	if len(visited) != 8 {
		t.Fatalf("visited %d distinct trees, want 8", len(visited))
	}
	for tid, n := range visited {
		if n != 1 || s.loads[tid] != 1 {
			t.Errorf("tree %s visited %d times, loaded %d times", tid.Short(), n, s.loads[tid])
		}
	}
	if m := s.maxRun.Load(); m > 3 {
		t.Errorf("%d loads at once with 3 workers", m)
	}
}

func TestVisitorTagsAndEnter(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	leaf := build(t, s, 0, 0, "leaf")
	other := build(t, s, 0, 0, "other")
	// mid holds x -> leaf; root holds m -> mid and o -> other.
	midTree := &Tree{Nodes: []*Node{{Name: "x", Type: Dir, Subtree: &leaf}}}
	mid, _ := Save(ctx, s, midTree)
	rootTree := &Tree{Nodes: []*Node{{Name: "m", Type: Dir, Subtree: &mid}, {Name: "o", Type: Dir, Subtree: &other}}}
	root, _ := Save(ctx, s, rootTree)
	var mu sync.Mutex
	paths := map[id.ID]string{}
	v := Visitor[string]{
		Enter: func(tid id.ID, p string) bool { return tid != other },
		Visit: func(_ context.Context, tr *Tree, p string) (func(*Node) string, error) {
			mu.Lock()
			paths[tr.ID] = p
			mu.Unlock()
			return func(n *Node) string { return path.Join(p, n.Name) }, nil
		},
	}
	if err := v.Run(ctx, s, []Root[string]{{ID: root, Tag: "/"}}); err != nil {
		t.Fatal(err)
	}
	want := map[id.ID]string{root: "/", mid: "/m", leaf: "/m/x"}
	if len(paths) != len(want) {
		t.Fatalf("visited %v, want %v", paths, want)
	}
	for tid, p := range want {
		if paths[tid] != p {
			t.Errorf("tree %s visited with tag %q, want %q", tid.Short(), paths[tid], p)
		}
	}
	if s.loads[other] != 0 {
		t.Error("a tree Enter refused was loaded")
	}
}

func TestVisitorLoadErrors(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	a := build(t, s, 2, 2, "a")
	b := build(t, s, 2, 2, "b")
	ta, _ := Load(ctx, s, a)
	bad := *ta.Nodes[1].Subtree
	s.fail[bad] = true
	var mu sync.Mutex
	var failed []id.ID
	n := 0
	v := Visitor[struct{}]{
		Visit: func(context.Context, *Tree, struct{}) (func(*Node) struct{}, error) {
			mu.Lock()
			n++
			mu.Unlock()
			return nil, nil
		},
		LoadError: func(tid id.ID, _ struct{}, err error) error {
			mu.Lock()
			failed = append(failed, tid)
			mu.Unlock()
			return nil
		},
	}
	if err := v.Run(ctx, s, Roots(a, b)); err != nil {
		t.Fatal(err)
	}
	// a, b, b's level-1 and level-2 trees; bad (a's level 1) and what
	// only it leads to (a's level 2) are not visited.
	if len(failed) != 1 || failed[0] != bad || n != 4 {
		t.Fatalf("failed %v, visited %d; want [%s], 4", failed, n, bad.Short())
	}

	// Without LoadError the first failure is the result.
	v.LoadError = nil
	if err := v.Run(ctx, s, Roots(a)); err == nil {
		t.Fatal("a tree that cannot be loaded was not an error")
	}

	// An error from Visit stops the traversal.
	stop := errors.New("stop")
	v.Visit = func(context.Context, *Tree, struct{}) (func(*Node) struct{}, error) { return nil, stop }
	if err := v.Run(ctx, s, Roots(b)); !errors.Is(err, stop) {
		t.Fatalf("got %v, want the visit's error", err)
	}
}

func TestVisitorCancel(t *testing.T) {
	s := newMemStore()
	s.delay = 50 * time.Millisecond
	root := build(t, s, 6, 2, "a")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	v := Visitor[struct{}]{Workers: 2}
	if err := v.Run(ctx, s, Roots(root)); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancelled traversal took %v", d)
	}
}

func TestVisitorLoadsInParallel(t *testing.T) {
	s := newMemStore()
	s.delay = 5 * time.Millisecond
	// 1+4+16+64 distinct trees: each subdirectory holds its own file name.
	var mk func(depth int, name string) id.ID
	mk = func(depth int, name string) id.ID {
		tr := &Tree{Nodes: []*Node{{Name: name, Type: File}}}
		if depth > 0 {
			for i := range 4 {
				sub := mk(depth-1, fmt.Sprintf("%s.%d", name, i))
				tr.Nodes = append(tr.Nodes, &Node{Name: fmt.Sprintf("d%d", i), Type: Dir, Subtree: &sub})
			}
		}
		tr.Sort()
		tid, err := Save(context.Background(), s, tr)
		if err != nil {
			t.Fatal(err)
		}
		return tid
	}
	root := mk(3, "r")
	start := time.Now()
	v := Visitor[struct{}]{Workers: 8}
	if err := v.Run(context.Background(), s, Roots(root)); err != nil {
		t.Fatal(err)
	}
	if len(s.loads) != 85 {
		t.Fatalf("loaded %d trees, want 85", len(s.loads))
	}
	if m := s.maxRun.Load(); m < 4 || m > 8 {
		t.Errorf("at most %d trees loaded at once with 8 workers (took %v)", m, time.Since(start))
	}
}
