package tree

import (
	"context"
	"sync"

	"github.com/nestguard/nestguard/internal/id"
)

// DefaultWorkers is how many trees a Visitor loads at once unless told:
// loading a tree is mostly waiting for storage (a round trip on object
// storage), so more than the CPUs.
const DefaultWorkers = 16

// Root is a tree to start visiting from, with the tag its visit gets.
type Root[T any] struct {
	ID  id.ID
	Tag T
}

// Roots returns untagged roots for ids.
func Roots(ids ...id.ID) []Root[struct{}] {
	rs := make([]Root[struct{}], len(ids))
	for i, tid := range ids {
		rs[i] = Root[struct{}]{ID: tid}
	}
	return rs
}

// Visitor is the one parallel tree traversal: verify, copy, stats and
// retention use it to reach every tree below any number of roots (the
// snapshots of a repository share most trees). Each distinct tree is
// loaded and visited exactly once, by tree ID, whichever root and path
// lead to it first; trees are loaded Workers at a time and are not kept
// after their visit.
//
// A tag of type T travels from a tree to its subtrees (a seed directory,
// say); a subtree reached by several paths gets the tag of the first one
// found. Memory stays bounded: the trees still to visit are a stack of IDs
// and tags, taken depth first, so it holds the subdirectory entries of the
// trees on the paths being visited, not a level of the whole repository;
// what grows with the repository is only the set of tree IDs already seen.
//
// Walk is the other form: one root, depth first in name order, every path
// (a tree reached twice is visited twice), for restore and ls, which need
// paths and order rather than parallelism.
type Visitor[T any] struct {
	// Workers bounds the trees loaded and visited at once; DefaultWorkers
	// if <= 0.
	Workers int
	// Enter, if set, is called once per distinct tree before it is
	// loaded; false skips the tree and everything below it that is not
	// reached through another tree.
	Enter func(tid id.ID, tag T) bool
	// Visit is called once per distinct tree loaded, from several
	// goroutines at once. It returns the tag of each subtree (nil: the
	// zero T). An error stops the traversal, which returns it.
	Visit func(ctx context.Context, t *Tree, tag T) (func(n *Node) T, error)
	// LoadError is called for a tree that cannot be loaded (or decoded);
	// returning nil goes on with the other trees. Without it a tree that
	// cannot be loaded stops the traversal with that error. It is not
	// called once ctx is done.
	LoadError func(tid id.ID, tag T, err error) error
}

// Run visits every distinct tree reachable from roots in s, and returns
// the first error of Visit or LoadError, or ctx's error if ctx ends first.
func (v *Visitor[T]) Run(ctx context.Context, s BlobStore, roots []Root[T]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &run[T]{v: v, s: s, seen: make(map[id.ID]struct{}), cancel: cancel}
	r.cond = sync.NewCond(&r.mu)
	for i := len(roots) - 1; i >= 0; i-- {
		r.push(roots[i].ID, roots[i].Tag)
	}
	stop := context.AfterFunc(ctx, func() { r.fail(ctx.Err()) })
	workers := v.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.work(ctx)
		}()
	}
	wg.Wait()
	stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// run is the state of one Run.
type run[T any] struct {
	v      *Visitor[T]
	s      BlobStore
	cancel context.CancelFunc

	mu     sync.Mutex
	cond   *sync.Cond
	stack  []Root[T]
	seen   map[id.ID]struct{}
	active int // trees being visited
	err    error
}

// push adds tid unless it was seen. The caller holds mu or is single.
func (r *run[T]) push(tid id.ID, tag T) {
	if _, ok := r.seen[tid]; ok {
		return
	}
	r.seen[tid] = struct{}{}
	r.stack = append(r.stack, Root[T]{ID: tid, Tag: tag})
}

func (r *run[T]) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.cancel()
	r.cond.Broadcast()
}

// next returns the next tree to visit, waiting while other workers may
// still find some; false when the traversal is over or failed.
func (r *run[T]) next() (Root[T], bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.err == nil && len(r.stack) == 0 && r.active > 0 {
		r.cond.Wait()
	}
	if r.err != nil || len(r.stack) == 0 {
		return Root[T]{}, false
	}
	it := r.stack[len(r.stack)-1]
	r.stack[len(r.stack)-1] = Root[T]{}
	r.stack = r.stack[:len(r.stack)-1]
	r.active++
	return it, true
}

func (r *run[T]) work(ctx context.Context) {
	for {
		it, ok := r.next()
		if !ok {
			r.cond.Broadcast()
			return
		}
		subs, err := r.visit(ctx, it)
		if err != nil {
			r.fail(err)
		}
		r.mu.Lock()
		for i := len(subs) - 1; i >= 0; i-- {
			r.push(subs[i].ID, subs[i].Tag)
		}
		r.active--
		r.mu.Unlock()
		r.cond.Broadcast()
	}
}

// visit loads and visits one tree and returns its subtrees.
func (r *run[T]) visit(ctx context.Context, it Root[T]) ([]Root[T], error) {
	if r.v.Enter != nil && !r.v.Enter(it.ID, it.Tag) {
		return nil, nil
	}
	t, err := Load(ctx, r.s, it.ID)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if r.v.LoadError == nil {
			return nil, err
		}
		return nil, r.v.LoadError(it.ID, it.Tag, err)
	}
	var tagOf func(*Node) T
	if r.v.Visit != nil {
		if tagOf, err = r.v.Visit(ctx, t, it.Tag); err != nil {
			return nil, err
		}
	}
	var subs []Root[T]
	for _, n := range t.Nodes {
		if n.Subtree == nil {
			continue
		}
		s := Root[T]{ID: *n.Subtree}
		if tagOf != nil {
			s.Tag = tagOf(n)
		}
		subs = append(subs, s)
	}
	return subs, nil
}
