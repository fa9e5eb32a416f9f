// Package retention finds the stored objects a snapshot needs and keeps
// them: it extends their Object Lock retention after a backup (Apply), and
// internal/hold places legal holds on the same set.
package retention

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/needs"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// Set is every stored object a snapshot needs to be restored: the
// repository config and key slots, the snapshot object, every pack holding
// one of its tree and data blobs (a blob in two packs needs both: either
// copy may be the one left), the index objects listing those packs and, for
// PostgreSQL snapshots, the WAL from its start to its stop segment.
type Set struct {
	Snapshot id.ID
	Packs    []id.ID
	Indexes  []id.ID
	Keys     []string
	WAL      []string
	// Missing names blobs the snapshot references that are not indexed or
	// trees that could not be read: the objects found are still listed.
	Missing []string
}

// maxMissing bounds how many missing blobs a Set names.
const maxMissing = 20

// Handles returns every object of the set.
func (s *Set) Handles() []backend.Handle {
	hs := make([]backend.Handle, 0, 2+len(s.Packs)+len(s.Indexes)+len(s.Keys)+len(s.WAL))
	hs = append(hs, backend.Handle{Type: backend.ConfigFile, Name: "config"})
	for _, k := range s.Keys {
		hs = append(hs, backend.Handle{Type: backend.KeyFile, Name: k})
	}
	hs = append(hs, backend.Handle{Type: backend.SnapshotFile, Name: s.Snapshot.String()})
	for _, p := range s.Packs {
		hs = append(hs, backend.Handle{Type: backend.PackFile, Name: p.String()})
	}
	for _, i := range s.Indexes {
		hs = append(hs, backend.Handle{Type: backend.IndexFile, Name: i.String()})
	}
	for _, w := range s.WAL {
		hs = append(hs, backend.Handle{Type: backend.WALFile, Name: w})
	}
	return hs
}

// MissingError reports a snapshot whose objects could not all be found.
func (s *Set) MissingError() error {
	if len(s.Missing) == 0 {
		return nil
	}
	return fmt.Errorf("snapshot %s references data that is missing or unreadable (%s): the objects found were protected; run 'nestguard verify'",
		s.Snapshot.Short(), strings.Join(s.Missing, "; "))
}

// Collector finds the object sets of snapshots of one repository. It reads
// the index objects once, for all the snapshots it is asked about.
type Collector struct {
	repo      *repository.Repository
	once      sync.Once
	err       error
	packIndex map[id.ID][]id.ID // pack -> index objects listing it
	keys      []string
	walNames  []string
	walListed bool
}

// NewCollector returns a Collector for repo, whose index must be loaded.
func NewCollector(repo *repository.Repository) *Collector { return &Collector{repo: repo} }

func (c *Collector) load(ctx context.Context) error {
	c.once.Do(func() {
		ip, err := c.repo.IndexPacks(ctx)
		if err != nil {
			c.err = fmt.Errorf("reading the index objects: %w", err)
			return
		}
		c.packIndex = make(map[id.ID][]id.ID)
		for iid, packs := range ip {
			for _, p := range packs {
				c.packIndex[p] = append(c.packIndex[p], iid)
			}
		}
		err = c.repo.Backend().List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
			c.keys = append(c.keys, fi.Name)
			return nil
		})
		if err != nil {
			c.err = fmt.Errorf("listing key slots: %w", err)
		}
	})
	return c.err
}

func (c *Collector) wal(ctx context.Context) ([]string, error) {
	if c.walListed {
		return c.walNames, nil
	}
	err := c.repo.Backend().List(ctx, backend.WALFile, func(fi backend.FileInfo) error {
		c.walNames = append(c.walNames, fi.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing WAL: %w", err)
	}
	c.walListed = true
	return c.walNames, nil
}

// Objects returns the objects snapshot sn needs; see Set.
func Objects(ctx context.Context, repo *repository.Repository, sn *snapshot.Snapshot) (*Set, error) {
	return NewCollector(repo).Objects(ctx, sn)
}

// Objects returns the objects sn needs; see Set. It is not safe for
// concurrent use.
func (c *Collector) Objects(ctx context.Context, sn *snapshot.Snapshot) (*Set, error) {
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	s := &Set{Snapshot: sn.ID, Keys: slices.Clone(c.keys)}
	w := &packFinder{idx: c.repo.Index(), repo: c.repo, packs: make(map[id.ID]struct{})}
	need, err := needs.Of(sn)
	if err != nil {
		return nil, err
	}
	for _, b := range need.Blobs {
		w.blob(b.ID)
	}
	if err := w.walk(ctx, need.Tree); err != nil {
		return nil, err
	}
	s.Missing = w.missing
	if w.nMissing > len(w.missing) {
		s.Missing = append(s.Missing, fmt.Sprintf("and %d more", w.nMissing-len(w.missing)))
	}
	idxSet := make(map[id.ID]struct{})
	for p := range w.packs {
		s.Packs = append(s.Packs, p)
		for _, iid := range c.packIndex[p] {
			idxSet[iid] = struct{}{}
		}
	}
	for iid := range idxSet {
		s.Indexes = append(s.Indexes, iid)
	}
	sortIDs(s.Packs)
	sortIDs(s.Indexes)
	if len(need.WAL) > 0 {
		names, err := c.wal(ctx)
		if err != nil {
			return nil, err
		}
		s.WAL = need.WALObjects(names)
	}
	return s, nil
}

func sortIDs(ids []id.ID) {
	slices.SortFunc(ids, func(a, b id.ID) int { return strings.Compare(string(a[:]), string(b[:])) })
}

// packFinder collects the packs of every blob below a snapshot's trees,
// which it reaches with tree.Visitor.
type packFinder struct {
	repo     *repository.Repository
	idx      *index.Map
	mu       sync.Mutex
	packs    map[id.ID]struct{}
	missing  []string
	nMissing int
}

// blob records every pack holding bid: a blob stored twice (concurrent
// backups) is kept in each copy, so that neither can expire or lose its
// hold while a snapshot needs the blob. The caller holds mu or is single.
func (w *packFinder) blob(bid id.ID) bool {
	ls := w.idx.Locations(bid)
	if len(ls) == 0 {
		w.miss("blob " + bid.Short() + " is not in the index")
		return false
	}
	for _, e := range ls {
		w.packs[e.Pack] = struct{}{}
	}
	return true
}

func (w *packFinder) miss(what string) {
	w.nMissing++
	if len(w.missing) < maxMissing {
		w.missing = append(w.missing, what)
	}
}

// walk records the packs of every tree and data blob below root. A tree
// that is not indexed or cannot be read is missing; the rest is still
// walked.
func (w *packFinder) walk(ctx context.Context, root id.ID) error {
	v := tree.Visitor[struct{}]{
		Enter: func(tid id.ID, _ struct{}) bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.blob(tid)
		},
		Visit: func(_ context.Context, t *tree.Tree, _ struct{}) (func(*tree.Node) struct{}, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			for _, n := range t.Nodes {
				for _, bid := range n.Content {
					w.blob(bid)
				}
			}
			return nil, nil
		},
		LoadError: func(_ id.ID, _ struct{}, err error) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.miss(err.Error())
			return nil
		},
	}
	return v.Run(ctx, w.repo, tree.Roots(root))
}
