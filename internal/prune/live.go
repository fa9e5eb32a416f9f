package prune

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/needs"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// liveSet is every blob the listed snapshots need (internal/needs: the
// trees and data blobs below each root tree, and blobs outside the tree
// such as a base backup's pg_control). It only grows: add walks the
// snapshots not walked yet and skips trees an earlier walk reached, so
// the second listing of a run costs only what is new.
type liveSet struct {
	mu     sync.Mutex
	blobs  map[id.ID]struct{}
	trees  map[id.ID]struct{} // trees a completed walk reached
	walked map[id.ID]struct{} // snapshots
}

func newLiveSet() *liveSet {
	return &liveSet{blobs: make(map[id.ID]struct{}), trees: make(map[id.ID]struct{}), walked: make(map[id.ID]struct{})}
}

func (l *liveSet) has(bid id.ID) bool {
	_, ok := l.blobs[bid]
	return ok
}

// listSnapshots lists the snapshots; one that cannot be read stops the
// prune (its data would look unused). A snapshot removed since it was
// listed (a concurrent forget) is simply gone.
func listSnapshots(ctx context.Context, repo *repository.Repository) ([]*snapshot.Snapshot, error) {
	snaps, unreadable, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	var bad []string
	for _, e := range unreadable {
		if !errors.Is(e, fs.ErrNotExist) {
			bad = append(bad, e.Error())
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("refusing to prune: %d snapshots cannot be read, and the data they need would look unused (%s); run 'nestguard verify', and remove a snapshot that is damaged beyond repair with 'nestguard forget ID' first",
			len(bad), strings.Join(bad, "; "))
	}
	return snaps, nil
}

// listSnapshots lists the snapshots, less those a dry run prunes
// without (Options.Without).
func (p *pruner) listSnapshots(ctx context.Context) ([]*snapshot.Snapshot, error) {
	snaps, err := listSnapshots(ctx, p.repo)
	if err != nil || len(p.o.Without) == 0 {
		return snaps, err
	}
	return slices.DeleteFunc(snaps, func(sn *snapshot.Snapshot) bool { return p.o.Without[sn.ID] }), nil
}

// add walks the snapshots of snaps not walked yet. A tree that cannot be
// read, or a blob no index lists, stops the prune: what it needs is
// unknown, or the repository is damaged. Before concluding that, it
// reads the index objects written since the index was loaded (a backup
// that finished meanwhile) and walks again.
func (l *liveSet) add(ctx context.Context, repo *repository.Repository, snaps []*snapshot.Snapshot) error {
	err := l.walk(ctx, repo, snaps)
	if err == nil || ctx.Err() != nil {
		return err
	}
	if lerr := repo.LoadIndex(ctx); lerr != nil {
		return errors.Join(err, lerr)
	}
	return l.walk(ctx, repo, snaps)
}

// walk is one attempt of add. Trees are skipped only when a walk that
// completed reached them (then everything below them is in the set).
func (l *liveSet) walk(ctx context.Context, repo *repository.Repository, snaps []*snapshot.Snapshot) error {
	idx := repo.Index()
	var roots []id.ID
	var missing []string
	trees := make(map[id.ID]struct{})
	for _, sn := range snaps {
		if _, ok := l.walked[sn.ID]; ok {
			continue
		}
		n, err := needs.Of(sn)
		if err != nil {
			return fmt.Errorf("refusing to prune: snapshot %s: what it needs is unknown: %w", sn.ID.Short(), err)
		}
		for _, b := range n.Blobs {
			l.blobs[b.ID] = struct{}{}
			if !idx.Has(b.ID) {
				missing = append(missing, fmt.Sprintf("%s %s of snapshot %s", b.What, b.ID.Short(), sn.ID.Short()))
			}
		}
		if !n.Tree.IsNull() {
			roots = append(roots, n.Tree)
		}
	}
	v := tree.Visitor[struct{}]{
		Enter: func(tid id.ID, _ struct{}) bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			if _, ok := l.trees[tid]; ok {
				return false // a completed walk reached it, and everything below it
			}
			trees[tid] = struct{}{}
			l.blobs[tid] = struct{}{}
			if !idx.Has(tid) {
				missing = append(missing, "tree "+tid.Short())
			}
			return true
		},
		Visit: func(_ context.Context, t *tree.Tree, _ struct{}) (func(*tree.Node) struct{}, error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, n := range t.Nodes {
				for _, bid := range n.Content {
					l.blobs[bid] = struct{}{}
					if !idx.Has(bid) && len(missing) < 20 {
						missing = append(missing, "data blob "+bid.Short())
					}
				}
			}
			return nil, nil
		},
	}
	if err := v.Run(ctx, repo, tree.Roots(roots...)); err != nil {
		return fmt.Errorf("refusing to prune: reading the snapshots' trees: %w; run 'nestguard verify': it names the damaged snapshots, and once they are forgotten ('nestguard forget ID') prune runs again", err)
	}
	if err := idx.Err(); err != nil && len(missing) > 0 {
		// The blobs may be stored: the local cache failed a read.
		return fmt.Errorf("refusing to prune: the snapshots need blobs not found in the index, which could not be read whole (%s): %w; run prune again",
			strings.Join(missing[:min(len(missing), 20)], ", "), err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("refusing to prune: the snapshots need blobs that no index lists (%s); run 'nestguard repair index', then 'nestguard verify'",
			strings.Join(missing[:min(len(missing), 20)], ", "))
	}
	for tid := range trees {
		l.trees[tid] = struct{}{}
	}
	for _, sn := range snaps {
		l.walked[sn.ID] = struct{}{}
	}
	return nil
}
