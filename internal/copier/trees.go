package copier

import (
	"context"
	"fmt"
	"sync"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/tree"
)

// treePair is one directory in a seed snapshot: its source tree and the
// tree of its copy in the destination.
type treePair struct {
	src, dst id.ID
}

// plan is what copying one snapshot needs: the source data blobs to copy,
// and the source trees read while scanning (kept, within a budget, for the
// rewrite).
type plan struct {
	mu    sync.Mutex
	need  map[id.ID]struct{}
	cache map[id.ID]*tree.Tree
	nodes int // nodes in cache
}

// cacheNodes bounds the tree nodes kept between scan and rewrite (a few
// hundred bytes each); trees beyond it are read again.
const cacheNodes = 500_000

func newPlan() *plan {
	return &plan{need: make(map[id.ID]struct{}), cache: make(map[id.ID]*tree.Tree)}
}

// scan visits the snapshot's trees in parallel (tree.Visitor), each once,
// and records in pl the data blobs whose destination ID is not known yet.
// A directory identical to its seed directory is not read at all: its
// copy is the seed's copy. For a changed directory, the seed's listing and
// its copy tell the destination IDs of the files that did not change.
func (c *Copier) scan(ctx context.Context, root id.ID, hint *treePair, pl *plan) error {
	v := tree.Visitor[*treePair]{
		Enter: func(src id.ID, hint *treePair) bool {
			if _, ok := c.tree(src); ok {
				return false
			}
			// The seed's copy is reused whole only while no pack is a
			// deletion candidate: below it, any blob might be in one
			// (then its files teach blob by blob, see learnBlob).
			if hint != nil && hint.src == src && c.dst.Index().Has(hint.dst) && !c.dst.HasCandidatePacks() {
				c.setTree(src, hint.dst)
				return false
			}
			return true
		},
		Visit: func(ctx context.Context, t *tree.Tree, hint *treePair) (func(*tree.Node) *treePair, error) {
			children := c.learn(ctx, hint)
			pl.mu.Lock()
			defer pl.mu.Unlock()
			for _, n := range t.Nodes {
				for _, bid := range n.Content {
					if _, ok := c.blob(bid); !ok {
						pl.need[bid] = struct{}{}
					}
				}
			}
			if pl.nodes+len(t.Nodes) <= cacheNodes {
				pl.cache[t.ID] = t
				pl.nodes += len(t.Nodes)
			}
			return func(n *tree.Node) *treePair { return children[n.Name] }, nil
		},
		LoadError: func(_ id.ID, _ *treePair, err error) error {
			return fromSource("source: %w", err)
		},
	}
	return v.Run(ctx, c.src, []tree.Root[*treePair]{{ID: root, Tag: hint}})
}

// learn reads a seed directory and its copy, records the destination IDs
// of its files' blobs, and returns the seed pairs of its subdirectories by
// name. A seed that cannot be read, or whose copy does not match it entry
// for entry, teaches nothing: the blobs are then simply copied.
func (c *Copier) learn(ctx context.Context, h *treePair) map[string]*treePair {
	if h == nil {
		return nil
	}
	st, err := tree.Load(ctx, c.src, h.src)
	if err != nil {
		c.log.Debug("seed tree unreadable in the source", "tree", h.src.Short(), "err", err)
		return nil
	}
	dt, err := tree.Load(ctx, c.dst, h.dst)
	if err != nil {
		c.log.Debug("seed tree unreadable in the destination", "tree", h.dst.Short(), "err", err)
		return nil
	}
	children := make(map[string]*treePair)
	for _, sn := range st.Nodes {
		dn := dt.Find(sn.Name)
		if dn == nil || dn.Type != sn.Type || len(dn.Content) != len(sn.Content) || (sn.Subtree == nil) != (dn.Subtree == nil) {
			continue
		}
		for i, sb := range sn.Content {
			c.learnBlob(sb, dn.Content[i])
		}
		if sn.Subtree != nil {
			children[sn.Name] = &treePair{src: *sn.Subtree, dst: *dn.Subtree}
		}
	}
	return children
}

// learnBlob records that source blob s was copied as destination blob d,
// after checking that both are indexed with the same plaintext length and
// that d is stored outside the packs prune marked for deletion
// (repository.Repository.Reusable; else s is copied again).
func (c *Copier) learnBlob(s, d id.ID) {
	if _, ok := c.blob(s); ok {
		return
	}
	se, ok1 := c.src.Index().Lookup(s)
	de, ok2 := c.dst.Index().Lookup(d)
	if !ok1 || !ok2 || se.RawLength != de.RawLength || se.Type != de.Type || !c.dst.Reusable(d) {
		return
	}
	c.setBlob(s, d)
}

// rewrite saves the destination version of source tree sid, with every
// blob and subtree ID mapped, children first, and returns its ID.
func (c *Copier) rewrite(ctx context.Context, sid id.ID, pl *plan) (id.ID, error) {
	if d, ok := c.tree(sid); ok {
		return d, nil
	}
	t, ok := pl.cache[sid]
	if !ok {
		var err error
		if t, err = tree.Load(ctx, c.src, sid); err != nil {
			return id.Null, fromSource("source: %w", err)
		}
	}
	nt, err := t.MapIDs(func(bid id.ID) (id.ID, error) {
		nid, ok := c.blob(bid)
		if !ok {
			return id.Null, fmt.Errorf("blob %s was not copied", bid.Short())
		}
		return nid, nil
	}, func(sub id.ID) (id.ID, error) { return c.rewrite(ctx, sub, pl) })
	if err != nil {
		return id.Null, err
	}
	did, err := tree.Save(ctx, c.dst, nt)
	if err != nil {
		return id.Null, fmt.Errorf("destination: saving tree: %w", err)
	}
	c.setTree(sid, did)
	delete(pl.cache, sid)
	return did, nil
}

func (c *Copier) tree(s id.ID) (id.ID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.trees[s]
	return d, ok
}

func (c *Copier) setTree(s, d id.ID) {
	c.mu.Lock()
	c.trees[s] = d
	c.mu.Unlock()
}

func (c *Copier) blob(s id.ID) (id.ID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.blobs[s]
	return d, ok
}

func (c *Copier) setBlob(s, d id.ID) {
	c.mu.Lock()
	c.blobs[s] = d
	c.mu.Unlock()
}
