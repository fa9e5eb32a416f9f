package prune

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// keepGoodCopies checks the copies plan relies on for blobs stored twice.
// plan counts a live blob in one pack only, so a pack whose every live
// blob is counted elsewhere goes as unused, and a repacked pack copies
// only the blobs it counts. That is safe only while the copy that stays
// reads: one damaged in place (a flipped byte, same size) looks as good
// as any until it is read. So for each live blob with a copy in a pack
// that goes (unused or repacked) and none in a pack that is repacked (its
// repack reads the other copies when its own does not), the copies in
// packs that stay are read and authenticated, until one does. When none
// does, the copy in a going pack is kept: an unused pack holding it is
// not marked, and a repacked one copies it, and the prune fails naming
// the packs (as when a repack finds a blob that does not read).
// Only blobs stored twice (two backups at once) are read.
func (p *pruner) keepGoodCopies(ctx context.Context, v *view, pl *packPlan) error {
	if len(pl.dups) == 0 {
		return nil
	}
	unused := make(map[id.ID]bool, len(pl.unusedPacks))
	for _, pid := range pl.unusedPacks {
		unused[pid] = true
	}
	repacked := make(map[id.ID]bool, len(pl.repack))
	for _, pid := range pl.repack {
		repacked[pid] = true
	}
	keep := make(map[id.ID]bool)
	held := make(map[id.ID]int)     // going pack: blobs whose only good copy it holds
	damaged := make(map[id.ID]bool) // packs holding copies that do not read
	var dec []byte
	for _, bid := range sortedPacks(pl.dups) {
		var going, staying []index.Entry
		copied := false
		for _, e := range p.repo.Index().Locations(bid) {
			pi := v.packs[e.Pack]
			switch {
			case pi == nil || !pi.indexed || pi.record:
				// Gone, unindexed, or marked by an earlier run.
			case repacked[e.Pack] && slices.ContainsFunc(pl.claimed[e.Pack], func(c index.Entry) bool { return c.ID == bid }):
				copied = true
			case unused[e.Pack] || repacked[e.Pack]:
				going = append(going, e)
			default:
				staying = append(staying, e)
			}
		}
		if len(going) == 0 || copied || len(staying) == 0 {
			continue
		}
		good := false
		for _, e := range staying {
			ok, err := p.readsBack(ctx, e, &dec)
			if err != nil {
				return err
			}
			if good = ok; good {
				break
			}
			damaged[e.Pack] = true
		}
		if good {
			continue
		}
		for _, e := range going {
			held[e.Pack]++
			if unused[e.Pack] {
				keep[e.Pack] = true
			} else {
				pl.claimed[e.Pack] = append(pl.claimed[e.Pack], e)
			}
		}
	}
	if len(held) == 0 {
		return nil
	}
	pl.unusedPacks = slices.DeleteFunc(pl.unusedPacks, func(pid id.ID) bool { return keep[pid] })
	var names []string
	for _, pid := range sortedPacks(damaged) {
		names = append(names, pid.Short())
	}
	for _, pid := range sortedPacks(held) {
		what := "the pack is kept"
		if !keep[pid] {
			what = "they are repacked with its live blobs"
		}
		p.fail(fmt.Sprintf("pack %s holds the only copy that reads of %d live blobs (their other copies, in packs %s, are damaged or missing): %s; run 'nestguard verify --read-data'",
			pid.Short(), held[pid], strings.Join(names, ", "), what))
	}
	return nil
}

// readsBack reports whether blob copy e reads from its pack and
// authenticates and hashes to its ID (Repository.LoadBlobAt). Only ctx's
// end is an error.
func (p *pruner) readsBack(ctx context.Context, e index.Entry, dec *[]byte) (bool, error) {
	_, err := p.repo.LoadBlobAt(ctx, e, dec)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return err == nil, nil
}

// checkOutsideCopies is keepGoodCopies at deletion time. A pack of D that
// holds a live blob goes only because that blob has a copy outside D: the
// new copy its repack wrote, or the other copy of a blob stored twice.
// That copy may have gone bad since the pack was marked (a grace period
// of days), so before anything is deleted, each such blob's copies outside
// D are read and checked (Repository.CheckCopy: the seal authenticates and
// the length is the index's) until one does. A pack holding a live blob
// none of whose outside copies reads is taken out of D, kept as a
// resurrected one, and the prune fails naming it; a later prune repacks it
// or keeps it again. The reads are what the repack wrote, once more.
func (s *sweeper) checkOutsideCopies(ctx context.Context) error {
	good := make(map[id.ID]bool) // live blobs with an outside copy that reads
	for _, pid := range sortedPacks(s.del) {
		var lost []id.ID
		damaged := make(map[id.ID]bool)
		for _, b := range s.v.packs[pid].blobs {
			if !s.live.has(b.id) || good[b.id] {
				continue
			}
			tried, ok := false, false
			for _, e := range s.repo.Index().Locations(b.id) {
				if pi := s.v.packs[e.Pack]; pi == nil || !pi.indexed || s.del[e.Pack] {
					continue
				}
				tried = true
				err := s.repo.CheckCopy(ctx, e)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err == nil {
					ok = true
					break
				}
				damaged[e.Pack] = true
			}
			// Untried: its only other copy is in a pack resurrect keeps.
			if ok || !tried {
				good[b.id] = true
				continue
			}
			lost = append(lost, b.id)
		}
		if len(lost) == 0 {
			continue
		}
		delete(s.del, pid)
		s.resurrected[pid] = true
		s.rep.Resurrected.add(s.v.packs[pid].size)
		var names []string
		for _, d := range sortedPacks(damaged) {
			names = append(names, d.Short())
		}
		s.fail(fmt.Sprintf("pack %s holds the only copy that reads of %d live blobs (their other copies, in packs %s, are damaged or missing): the pack is kept; run 'nestguard verify --read-data'",
			pid.Short(), len(lost), strings.Join(names, ", ")))
	}
	return nil
}
