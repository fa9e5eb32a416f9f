package prune

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// packPlan is what phase 1 decided for the packs no record names yet.
type packPlan struct {
	used, unused int64                   // live bytes; unused bytes left in packs that stay
	unusedPacks  []id.ID                 // indexed packs holding no live blob of their own
	orphans      []id.ID                 // packs no index lists, older than the grace period
	repack       []id.ID                 // partly used packs to repack, in order
	claimed      map[id.ID][]index.Entry // the live blobs each repack pack must copy
	dups         map[id.ID]struct{}      // live blobs also stored in a pack that does not claim them
}

// plan sorts the indexed packs no record names into unused, partly used
// and fully used. Each live blob is counted in one pack only (it
// "claims" it): a blob stored twice (two backups at once) is used in the
// fuller pack, and its other copy is unused, so a pack whose every live
// blob also lives in a pack that stays is unused. Partly used packs are
// repacked, those with the largest unused share first, while more than
// maxUnused would stay unused (restic's --max-unused) and within
// maxRepack bytes (0: no bound). Packs no index lists are marked only when
// stored before orphanCutoff: a running backup's packs are unindexed until
// it flushes. A truncated pack (stored shorter than its blobs' end) claims
// last.
func plan(v *view, live *liveSet, maxUnused Unused, maxRepack int64, orphanCutoff time.Time) *packPlan {
	type cand struct {
		pid    id.ID
		pi     *packInfo
		short  bool  // stored shorter than its blobs' end: truncated
		naive  int64 // bytes of live blobs, claimed or not
		used   int64
		unused int64
		mine   []index.Entry
	}
	var cands []*cand
	pl := &packPlan{claimed: make(map[id.ID][]index.Entry), dups: make(map[id.ID]struct{})}
	for pid, pi := range v.packs {
		switch {
		case pi.record:
		case !pi.indexed:
			if pi.mtime.Before(orphanCutoff) {
				pl.orphans = append(pl.orphans, pid)
			}
		default:
			c := &cand{pid: pid, pi: pi}
			for _, e := range pi.blobs {
				if live.has(e.id) {
					c.naive += int64(e.length)
				}
				c.short = c.short || int64(e.offset)+int64(e.length) > pi.size
			}
			cands = append(cands, c)
		}
	}
	// Fullest first: they claim the blobs they share with emptier packs.
	// A pack stored shorter than the blobs the index lists in it was
	// truncated: it claims only blobs no whole pack holds, so the copy
	// kept of a blob stored twice is never the cut one (its other blobs
	// stay, for verify to report).
	slices.SortFunc(cands, func(a, b *cand) int {
		if a.short != b.short {
			if a.short {
				return 1
			}
			return -1
		}
		ra, rb := float64(a.naive)/float64(max(a.pi.size, 1)), float64(b.naive)/float64(max(b.pi.size, 1))
		if c := cmp.Compare(rb, ra); c != 0 {
			return c
		}
		return strings.Compare(string(a.pid[:]), string(b.pid[:]))
	})
	claimed := make(map[id.ID]struct{})
	var partial []*cand
	for _, c := range cands {
		var mine []index.Entry
		for _, e := range c.pi.blobs {
			_, done := claimed[e.id]
			switch {
			case live.has(e.id) && !done:
				claimed[e.id] = struct{}{}
				c.used += int64(e.length)
				mine = append(mine, e.entry(c.pid))
			case live.has(e.id):
				pl.dups[e.id] = struct{}{}
				fallthrough
			default:
				c.unused += int64(e.length)
			}
		}
		pl.used += c.used
		switch {
		case c.used == 0:
			pl.unusedPacks = append(pl.unusedPacks, c.pid)
		case c.unused > 0:
			c.mine = mine
			partial = append(partial, c)
			pl.unused += c.unused
		}
	}
	slices.SortFunc(partial, func(a, b *cand) int {
		ra, rb := float64(a.unused)/float64(a.used+a.unused), float64(b.unused)/float64(b.used+b.unused)
		if c := cmp.Compare(rb, ra); c != 0 {
			return c
		}
		return strings.Compare(string(a.pid[:]), string(b.pid[:]))
	})
	limit := maxUnused.limit(pl.used)
	var repacked int64
	for _, c := range partial {
		if pl.unused <= limit {
			break
		}
		if maxRepack > 0 && repacked+c.pi.size > maxRepack {
			continue
		}
		repacked += c.pi.size
		pl.unused -= c.unused
		pl.repack = append(pl.repack, c.pid)
		pl.claimed[c.pid] = c.mine
	}
	sortIDs(pl.unusedPacks)
	sortIDs(pl.orphans)
	return pl
}

func sortIDs(ids []id.ID) {
	slices.SortFunc(ids, func(a, b id.ID) int { return strings.Compare(string(a[:]), string(b[:])) })
}
