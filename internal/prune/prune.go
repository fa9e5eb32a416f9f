// Package prune removes what no snapshot needs: packs no snapshot uses,
// the unused part of partly used packs (their live blobs are repacked),
// and, through Options.WAL, PostgreSQL WAL no kept base backup needs. It
// never deletes a pack in the run that finds it unused: it marks it in a
// deletion-candidate record (internal/candidates), and a later run (or
// the same one with a zero grace period) deletes it once the record's
// grace period has passed and the pack is still unused. Backups do not
// deduplicate against marked packs, so a pack that is about to go never
// gains a new user. The design and why it is safe beside running
// backups and against kill -9 at any point are in docs/format.md
// ("Prune").
//
// Run does both phases: mark (snapshots listed, live set walked, unused
// packs found, partly used packs repacked, one record written) and
// delete what is due (records listed, then snapshots listed and the live
// set walked again; packs of due records that a snapshot needs again are
// resurrected; the index objects listing the others are replaced first,
// then the packs deleted, then the records removed).
package prune

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/candidates"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// ErrIncomplete says a prune finished but could not do everything it
// should have (Report.Errors names what); nothing it did is unsafe.
var ErrIncomplete = errors.New("prune incomplete")

// Run prunes repo, whose index must be loaded (repository.LoadIndex). It
// returns the report also with an error, as far as it got: a failure
// leaves the repository consistent (see the package documentation), and
// the next prune goes on where it stopped.
func Run(ctx context.Context, repo *repository.Repository, o Options) (*Report, error) {
	if len(o.Without) > 0 && !o.DryRun {
		return nil, errors.New("prune: pruning as if snapshots were removed (Options.Without) is for a dry run only")
	}
	start := time.Now()
	p := &pruner{repo: repo, o: o, log: o.logger(), live: newLiveSet(), indexRead: make(map[id.ID]*indexObject), rep: &Report{DryRun: o.DryRun,
		Retained: []Retained{}, WALRemoved: []string{}, Warnings: []string{}, Errors: []string{}}}
	var err error
	if o.DryRun {
		err = p.run(ctx)
	} else {
		// Before the lock record is written: on a full storage the
		// temporary files of writers killed over a day ago may be what
		// makes room for it. Writers remove them unlocked too.
		repo.CleanStaleTemp(ctx)
		err = p.runLocked(ctx)
	}
	p.rep.Elapsed = time.Since(start)
	if err == nil && len(p.rep.Errors) > 0 {
		err = fmt.Errorf("%w: %s", ErrIncomplete, strings.Join(p.rep.Errors, "; "))
	}
	return p.rep, err
}

type pruner struct {
	repo *repository.Repository
	o    Options
	log  interface {
		Info(string, ...any)
		Warn(string, ...any)
	}
	live *liveSet
	rep  *Report
	// damaged are the candidate records that cannot be read (see
	// removeDamaged).
	damaged map[id.ID]bool
	// indexRead holds the index objects read so far (see load).
	indexRead map[id.ID]*indexObject
	snaps     []*snapshot.Snapshot // the latest listing
	// held is the prune lock while it is held (not in a dry run).
	held *runLock
}

// runLocked is run while this prune holds the repository's prune lock
// (lock.go); a dry run deletes nothing and takes none.
func (p *pruner) runLocked(ctx context.Context) error {
	rctx, l, err := p.lock(ctx, lockRefresh)
	if err != nil {
		return err
	}
	defer l.unlock(ctx)
	p.held = l
	defer func() { p.held = nil }()
	if err := p.run(rctx); err != nil {
		if cause := context.Cause(rctx); cause != nil && ctx.Err() == nil {
			return fmt.Errorf("%w (%w)", err, cause)
		}
		return err
	}
	return nil
}

func (p *pruner) run(ctx context.Context) error {
	if err := p.mark(ctx); err != nil {
		return err
	}
	if err := p.sweep(ctx); err != nil {
		return err
	}
	if err := p.removeDamaged(ctx); err != nil {
		return err
	}
	return p.expireWAL(ctx)
}

// removeDamaged removes the candidate records that cannot be read. No
// prune can read one, so none deletes its packs, and writers ignore it:
// it protects nothing and deletes nothing, and the packs it names that no
// snapshot needs are marked again by phase 1 like any others. Left in
// place it would be warned about by every prune and backup forever.
func (p *pruner) removeDamaged(ctx context.Context) error {
	if p.o.DryRun || len(p.damaged) == 0 {
		return nil
	}
	var hs []backend.Handle
	for _, rid := range sortedPacks(p.damaged) {
		hs = append(hs, backend.Handle{Type: backend.CandidateFile, Name: rid.String()})
	}
	return p.removeAllowed(ctx, hs, "",
		func(h backend.Handle) string { return fmt.Sprintf("removing the damaged %s", h) },
		func(h backend.Handle) {
			p.rep.RecordsRemoved++
			p.warn(fmt.Sprintf("removed the damaged deletion-candidate record %s", h))
		})
}

// removeAllowed removes, in order, the objects of hs that the store lets
// prune delete now (retainedHandles reports the others, with why) and
// calls removed for each; one already gone counts as removed. A dry run
// removes nothing and still calls removed. describe names an object in
// the error of a failed removal.
func (p *pruner) removeAllowed(ctx context.Context, hs []backend.Handle, why string, describe func(backend.Handle) string, removed func(backend.Handle)) error {
	kept, err := p.retainedHandles(ctx, hs, why)
	if err != nil {
		return err
	}
	for _, h := range hs {
		if kept[h] {
			continue
		}
		if !p.o.DryRun {
			if err := p.repo.Backend().Remove(ctx, h); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: %w", describe(h), err)
			}
		}
		removed(h)
	}
	return nil
}

// records lists the candidate records; a damaged one is a warning (no
// prune can read its packs, so none deletes them).
func (p *pruner) records(ctx context.Context) ([]*candidates.Record, error) {
	recs, damaged, err := candidates.List(ctx, p.repo)
	if err != nil {
		return nil, fmt.Errorf("listing deletion-candidate records: %w", err)
	}
	for _, d := range damaged {
		var dm *candidates.Damaged
		if errors.As(d, &dm) {
			if p.damaged == nil {
				p.damaged = make(map[id.ID]bool)
			}
			p.damaged[dm.ID] = true
		}
		if p.o.DryRun {
			p.warn(d.Error() + ": no prune deletes the packs it names; a prune that is not a dry run removes it (and marks them again if no snapshot needs them)")
		}
	}
	return recs, nil
}

func (p *pruner) warn(msg string) {
	if !slices.Contains(p.rep.Warnings, msg) {
		p.rep.Warnings = append(p.rep.Warnings, msg)
		p.log.Warn(msg)
	}
}

func (p *pruner) fail(msg string) {
	p.rep.Errors = append(p.rep.Errors, msg)
	p.log.Warn(msg)
}

// mark is phase 1: find the packs no snapshot needs, repack partly used
// ones, and mark them all in one candidate record.
func (p *pruner) mark(ctx context.Context) error {
	p.o.progress(Progress{Step: "index"})
	recs, err := p.records(ctx)
	if err != nil {
		return err
	}
	v, err := load(ctx, p.repo, candidates.Packs(recs), p.indexRead, p.rep)
	if err != nil {
		return err
	}
	total := v.total()
	p.rep.Packs, p.rep.Bytes = total.Packs, total.Bytes
	p.o.progress(Progress{Step: "snapshots"})
	if p.snaps, err = p.listSnapshots(ctx); err != nil {
		return err
	}
	if err := p.live.add(ctx, p.repo, p.snaps); err != nil {
		return err
	}
	p.rep.Snapshots = len(p.snaps)
	now := p.o.now()
	for _, r := range recs {
		if !p.due(r, now) {
			for _, pid := range r.Packs {
				if pi := v.packs[pid]; pi != nil {
					p.rep.Pending.add(pi.size)
				}
			}
		}
	}

	pl := plan(v, p.live, p.o.maxUnused(), p.o.MaxRepack, now.Add(-p.o.grace()))
	p.rep.Used, p.rep.Unused = pl.used, pl.unused
	if err := p.keepGoodCopies(ctx, v, pl); err != nil {
		return err
	}
	// Packs the store does not let go are neither repacked nor marked.
	toCheck := append(slices.Clone(pl.unusedPacks), pl.repack...)
	toCheck = append(toCheck, pl.orphans...)
	retained, err := p.retained(ctx, toCheck, "unused")
	if err != nil {
		return err
	}
	var marks []id.ID
	for _, pid := range append(slices.Clone(pl.unusedPacks), pl.orphans...) {
		if !retained[pid] {
			marks = append(marks, pid)
		}
	}
	mk := &Mark{}
	for _, pid := range pl.orphans {
		if !retained[pid] {
			mk.Orphans++
		}
	}
	repacked, err := p.repack(ctx, v, pl, retained)
	if err != nil {
		return err
	}
	marks = append(marks, repacked...)
	// Packs the index lists that are gone: marked like the others, as a
	// pack a writer stored after this prune listed the packs looks
	// missing too. One holding blobs that snapshots need (lost) is
	// marked as well: listed, it let every later backup of that data
	// reuse what is gone and say "saved" (found by a hostile test);
	// taken out of the index, the next backup stores again what its
	// sources still have. Those snapshots stay damaged, and verify names
	// them.
	recorded := candidates.Packs(recs)
	var lost int
	for _, pid := range sortedPacks(v.missing) {
		if _, ok := recorded[pid]; ok {
			continue
		}
		marks = append(marks, pid)
		mk.Missing++
		if p.lostIn(v, pid, nil) {
			mk.Lost++
			lost++
		}
	}
	if lost > 0 {
		p.warn(fmt.Sprintf("%d packs the index lists are gone from storage and held data that snapshots need: those snapshots are damaged ('nestguard verify' names them); the packs leave the index once their grace period is over, so that backups store that data again where their sources still have it", lost))
	}
	if len(marks) == 0 {
		return nil
	}
	for _, pid := range marks {
		mk.Packs++
		if pi := v.packs[pid]; pi != nil {
			mk.Bytes += pi.size
		}
	}
	mk.NotBefore = now.Add(p.o.grace())
	p.rep.Marked = mk
	if p.o.DryRun {
		// With --grace 0 the sweep of a real run deletes what it just
		// marked; a dry run writes no record for its sweep to find.
		if p.due(&candidates.Record{Time: now, NotBefore: mk.NotBefore}, now) {
			for _, pid := range marks {
				if pi := v.packs[pid]; pi != nil {
					p.rep.Deleted.add(pi.size)
				}
			}
		}
		return nil
	}
	host, username := p.o.who()
	rec := &candidates.Record{Time: now, NotBefore: mk.NotBefore, Packs: marks, Host: host, User: username}
	if err := candidates.Save(ctx, p.repo, rec); err != nil {
		return err
	}
	mk.Record = rec.ID
	p.log.Info("marked packs as deletion candidates", "record", rec.ID.Short(), "packs", mk.Packs, "bytes", mk.Bytes, "not_before", mk.NotBefore)
	p.o.at(PointMarked)
	return nil
}

// lostIn reports whether missing pack pid holds a blob a snapshot needs
// that no stored, indexed pack outside del holds: then that blob is lost
// (prune reports it; the pack leaves the index all the same).
func (p *pruner) lostIn(v *view, pid id.ID, del map[id.ID]bool) bool {
	return slices.ContainsFunc(v.missing[pid], func(b blobRef) bool {
		if !p.live.has(b.id) {
			return false
		}
		for _, e := range p.repo.Index().Locations(b.id) {
			if pi := v.packs[e.Pack]; pi != nil && pi.indexed && !del[e.Pack] {
				return false
			}
		}
		return true
	})
}

// due reports whether record r may be acted on at now: its own grace
// period has passed, and so has this run's.
func (p *pruner) due(r *candidates.Record, now time.Time) bool {
	return !r.NotBefore.After(now) && !r.Time.Add(p.o.grace()).After(now)
}

// repack copies the live blobs of the packs pl chose into new packs and
// makes them durable and indexed. It returns the packs that may now be
// marked: those whose every live blob was copied.
func (p *pruner) repack(ctx context.Context, v *view, pl *packPlan, retained map[id.ID]bool) ([]id.ID, error) {
	var done []id.ID
	var bytes int64
	stored := p.repo.Stats.StoredBytes.Load()
	for i, pid := range pl.repack {
		if retained[pid] {
			continue
		}
		pi := v.packs[pid]
		blobs := pl.claimed[pid]
		p.o.progress(Progress{Step: "repack", Done: int64(i), Total: int64(len(pl.repack)), Bytes: bytes})
		bytes += pi.size
		if p.o.DryRun {
			p.rep.Repacked.add(pi.size)
			p.rep.RepackedBlobs += len(blobs)
			done = append(done, pid)
			continue
		}
		if err := p.repo.CopyBlobs(ctx, pid, blobs); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, backend.ErrFull) {
				p.fail(fmt.Sprintf("repacking pack %s: %v; the pack is kept and nothing is lost: repacking needs room for the new packs, while 'nestguard prune --max-unused unlimited' only deletes wholly unused packs", pid.Short(), err))
				continue
			}
			p.fail(fmt.Sprintf("repacking pack %s: %v: the pack is kept; run 'nestguard verify --read-data'", pid.Short(), err))
			continue
		}
		p.rep.Repacked.add(pi.size)
		p.rep.RepackedBlobs += len(blobs)
		done = append(done, pid)
	}
	if len(done) == 0 || p.o.DryRun {
		return done, nil
	}
	// The copies are durable and indexed before any record names the
	// packs they came from.
	if err := p.repo.Flush(ctx); err != nil {
		return nil, fmt.Errorf("storing the repacked blobs: %w", err)
	}
	p.rep.RepackedStored = p.repo.Stats.StoredBytes.Load() - stored
	p.o.at(PointRepacked)
	return done, nil
}

// retained asks the store which of pids it would not let prune delete now,
// and reports them (why: what prune wanted of them). Without Object Lock
// it asks nothing.
func (p *pruner) retained(ctx context.Context, pids []id.ID, why string) (map[id.ID]bool, error) {
	hs := make([]backend.Handle, len(pids))
	for i, pid := range pids {
		hs[i] = backend.Handle{Type: backend.PackFile, Name: pid.String()}
	}
	kept, err := p.retainedHandles(ctx, hs, why)
	if err != nil {
		return nil, err
	}
	out := make(map[id.ID]bool, len(kept))
	for h := range kept {
		pid, _ := id.Parse(h.Name)
		out[pid] = true
	}
	return out, nil
}

// retainedHandles is retained for any objects; with why empty it reports
// nothing.
func (p *pruner) retainedHandles(ctx context.Context, hs []backend.Handle, why string) (map[backend.Handle]bool, error) {
	out := make(map[backend.Handle]bool)
	if len(hs) == 0 {
		return out, nil
	}
	l, ok, err := p.repo.LockingStore(ctx)
	if err != nil || !ok {
		return out, err
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(repository.DefaultRetentionRequests)
	for _, h := range hs {
		g.Go(func() error {
			ret, err := l.Retention(gctx, h)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading the retention of %s: %w", h, err)
			}
			locked := ret.Mode != "" && p.o.now().Before(ret.Until)
			if !locked && !ret.LegalHold {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			out[h] = true
			if why == "" {
				return nil
			}
			p.rep.Retained = append(p.rep.Retained, Retained{Object: h.String(), Until: ret.Until, Held: ret.LegalHold, Why: why})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	slices.SortFunc(p.rep.Retained, func(a, b Retained) int { return strings.Compare(a.Object, b.Object) })
	return out, nil
}

// sweep is phase 2: delete the packs of due records that no snapshot
// needs.
func (p *pruner) sweep(ctx context.Context) error {
	recs, err := p.records(ctx)
	if err != nil {
		return err
	}
	now := p.o.now()
	var due []*candidates.Record
	for _, r := range recs {
		if p.due(r, now) {
			due = append(due, r)
		}
	}
	if len(due) == 0 {
		return nil
	}
	p.o.progress(Progress{Step: "index"})
	// Listed after the records: a backup that saved its snapshot before
	// a due record's NotBefore is seen here (docs/format.md "Prune").
	if err := p.repo.LoadIndex(ctx); err != nil {
		return err
	}
	v, err := load(ctx, p.repo, candidates.Packs(recs), p.indexRead, p.rep)
	if err != nil {
		return err
	}
	p.o.progress(Progress{Step: "snapshots"})
	if p.snaps, err = p.listSnapshots(ctx); err != nil {
		return err
	}
	if err := p.live.add(ctx, p.repo, p.snaps); err != nil {
		return err
	}
	p.rep.Snapshots = len(p.snaps)

	s := &sweeper{pruner: p, v: v, del: make(map[id.ID]bool), resurrected: make(map[id.ID]bool), gone: make(map[id.ID]bool)}
	for _, r := range due {
		for _, pid := range r.Packs {
			if v.packs[pid] == nil {
				s.gone[pid] = true
			} else {
				s.del[pid] = true
			}
		}
	}
	ret, err := p.retained(ctx, sortedPacks(s.del), "candidate")
	if err != nil {
		return err
	}
	for pid := range ret {
		delete(s.del, pid)
	}
	s.resurrect()
	if err := s.checkOutsideCopies(ctx); err != nil {
		return err
	}
	s.unlist = make(map[id.ID]bool)
	for _, pid := range sortedPacks(s.gone) {
		if _, listed := v.missing[pid]; listed {
			s.unlist[pid] = true
		}
	}
	if err := s.checkIndexObjects(ctx); err != nil {
		return err
	}
	// The local index cache failed a read (damaged or changed since it
	// was opened): a blob may have looked absent, and what is deleted was
	// decided on it. The next run rebuilds the cache.
	if err := p.repo.Index().Err(); err != nil {
		return fmt.Errorf("refusing to delete anything: the index could not be read whole: %w", err)
	}
	if p.o.DryRun {
		for pid := range s.del {
			p.rep.Deleted.add(v.packs[pid].size)
		}
		return nil
	}
	if err := s.replaceIndex(ctx); err != nil {
		return err
	}
	err = s.deletePacks(ctx)
	for pid := range s.deleted {
		p.rep.Deleted.add(v.packs[pid].size)
	}
	if err != nil {
		return err
	}
	if err := s.reindexResurrected(ctx); err != nil {
		return err
	}
	p.o.at(PointPacksDeleted)
	return s.removeRecords(ctx, due)
}

// sweeper is the state of one phase 2.
type sweeper struct {
	*pruner
	v           *view
	del         map[id.ID]bool // D: to be deleted
	resurrected map[id.ID]bool
	gone        map[id.ID]bool // named by a due record, no longer stored
	unlist      map[id.ID]bool // of gone, those the index still lists, to take out of it
	deleted     map[id.ID]bool
	affected    []id.ID // index objects listing a pack of D
}

// outside reports whether blob bid has a location that stays indexed: in
// an indexed pack outside D, or in a resurrected unindexed pack (which is
// indexed again).
func (s *sweeper) outside(bid id.ID, headerLocs map[id.ID][]id.ID) bool {
	for _, e := range s.repo.Index().Locations(bid) {
		if pi := s.v.packs[e.Pack]; pi != nil && pi.indexed && !s.del[e.Pack] {
			return true
		}
	}
	for _, pid := range headerLocs[bid] {
		if s.resurrected[pid] {
			return true
		}
	}
	return false
}

// resurrect takes out of D every pack holding a live blob that would
// otherwise have no location left. Taking a pack out only adds locations
// outside D, so one pass in a fixed order suffices.
func (s *sweeper) resurrect() {
	headerLocs := make(map[id.ID][]id.ID)
	for pid := range s.del {
		if pi := s.v.packs[pid]; !pi.indexed {
			for _, e := range pi.blobs {
				headerLocs[e.id] = append(headerLocs[e.id], pid)
			}
		}
	}
	for _, pid := range sortedPacks(s.del) {
		for _, e := range s.v.packs[pid].blobs {
			if s.live.has(e.id) && !s.outside(e.id, headerLocs) {
				delete(s.del, pid)
				s.resurrected[pid] = true
				s.rep.Resurrected.add(s.v.packs[pid].size)
				break
			}
		}
	}
}

// checkIndexObjects finds the index objects listing a pack of D; a pack
// listed by one the store keeps stays (it must not outlive its entry).
func (s *sweeper) checkIndexObjects(ctx context.Context) error {
	set := make(map[id.ID]bool)
	for _, m := range []map[id.ID]bool{s.del, s.unlist} {
		for pid := range m {
			for _, iid := range s.v.indexOf[pid] {
				set[iid] = true
			}
		}
	}
	var hs []backend.Handle
	for _, iid := range sortedPacks(set) {
		hs = append(hs, backend.Handle{Type: backend.IndexFile, Name: iid.String()})
	}
	kept, err := s.retainedHandles(ctx, hs, "index")
	if err != nil {
		return err
	}
	for h := range kept {
		iid, _ := id.Parse(h.Name)
		for _, pid := range s.v.indexPacks[iid] {
			delete(s.del, pid)
			delete(s.unlist, pid)
		}
		delete(set, iid)
	}
	// A pack taken out above may have been the only reason to replace
	// another index object.
	s.affected = nil
	for _, iid := range sortedPacks(set) {
		if slices.ContainsFunc(s.v.indexPacks[iid], s.drop) {
			s.affected = append(s.affected, iid)
		}
	}
	return nil
}

// drop reports whether the index objects must stop listing pack pid: it
// is to be deleted, or gone and unlisted.
func (s *sweeper) drop(pid id.ID) bool { return s.del[pid] || s.unlist[pid] }

// replaceIndex replaces every index object listing a pack of D (or a
// missing pack to unlist) by one without them: the packs are unindexed
// before they are deleted.
func (s *sweeper) replaceIndex(ctx context.Context) error {
	for i, iid := range s.affected {
		s.o.progress(Progress{Step: "index", Done: int64(i), Total: int64(len(s.affected))})
		if _, err := s.repo.ReplaceIndexObject(ctx, iid, s.drop); err != nil {
			return fmt.Errorf("replacing index/%s: %w", iid, err)
		}
		s.rep.IndexReplaced++
		if i == 0 {
			s.o.at(PointIndexReplaced)
		}
	}
	s.o.at(PointIndexRewritten)
	return nil
}

// deletePacks deletes the packs of D. A pack the store refuses to delete
// (a legal hold placed since it was checked) is reported and the others
// are still deleted: it is unindexed and stays a candidate, which the
// next prune deletes. Any other failure (the storage is gone) stops the
// prune: what it did so far is safe, and the next prune goes on.
func (s *sweeper) deletePacks(ctx context.Context) error {
	pids := sortedPacks(s.del)
	s.deleted = make(map[id.ID]bool)
	var mu sync.Mutex
	half := len(pids) / 2
	writes, _ := backend.ConcurrencyOf(s.repo.Backend())
	for _, part := range [][]id.ID{pids[:half], pids[half:]} {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(writes, 4))
		for _, pid := range part {
			g.Go(func() error {
				if err := s.lockFresh(); err != nil {
					return err
				}
				h := backend.Handle{Type: backend.PackFile, Name: pid.String()}
				err := s.repo.Backend().Remove(gctx, h)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, fs.ErrPermission):
					s.fail(fmt.Sprintf("deleting %s: %v (no index lists it any more; a later prune deletes it)", h, err))
					return nil
				case err != nil && !errors.Is(err, fs.ErrNotExist):
					return fmt.Errorf("deleting %s: %w (no index lists it any more; the next prune deletes it)", h, err)
				}
				s.deleted[pid] = true
				s.o.progress(Progress{Step: "delete", Done: int64(len(s.deleted)), Total: int64(len(pids))})
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		if len(part) > 0 && len(pids) > 1 {
			s.o.at(PointPacksDeleting)
		}
	}
	return nil
}

// reindexResurrected writes an index object for the resurrected packs no
// index lists, so the live blobs they hold are found again.
func (s *sweeper) reindexResurrected(ctx context.Context) error {
	var pbs []index.PackBlobs
	for _, pid := range sortedPacks(s.resurrected) {
		pi := s.v.packs[pid]
		if pi.indexed {
			continue
		}
		pb := index.PackBlobs{Pack: pid, Blobs: make([]index.Entry, len(pi.blobs))}
		for i, b := range pi.blobs {
			pb.Blobs[i] = b.entry(pid)
			s.repo.Index().Add(pb.Blobs[i])
		}
		pbs = append(pbs, pb)
	}
	if len(pbs) == 0 {
		return nil
	}
	if _, err := s.repo.WriteIndexObject(ctx, pbs); err != nil {
		return fmt.Errorf("indexing resurrected packs: %w", err)
	}
	return nil
}

// removeRecords removes each due record whose every pack was deleted (or
// was gone) or resurrected. A record the store keeps is harmless: its
// packs are gone.
func (s *sweeper) removeRecords(ctx context.Context, due []*candidates.Record) error {
	var done []backend.Handle
	for _, r := range due {
		if !slices.ContainsFunc(r.Packs, func(pid id.ID) bool { return !s.deleted[pid] && !s.gone[pid] && !s.resurrected[pid] }) {
			done = append(done, backend.Handle{Type: backend.CandidateFile, Name: r.ID.String()})
		}
	}
	// A record the store keeps is harmless (its packs are gone) and is
	// not reported: under Object Lock every record is kept for the
	// minimum retention.
	return s.removeAllowed(ctx, done, "",
		func(h backend.Handle) string { return fmt.Sprintf("removing %s, whose packs are all deleted", h) },
		func(backend.Handle) { s.rep.RecordsRemoved++ })
}

// expireWAL removes the WAL objects Options.WAL says no kept snapshot
// needs, once the boundaries of the expiry are recorded: a removal no
// record accounts for would be reported as WAL lost by verify.
func (p *pruner) expireWAL(ctx context.Context) error {
	if p.o.WAL == nil {
		return nil
	}
	names, bounds, err := p.o.WAL(ctx, p.snaps)
	if err != nil {
		return fmt.Errorf("computing the WAL to expire: %w", err)
	}
	// Recorded even when nothing is left to remove: a prune run again
	// records the boundary a deleted record, or a version of nestguard
	// before the records, left unrecorded. Save writes a record only when
	// a boundary moves up (an anchor moved: a base backup was forgotten),
	// so records do not pile up one per prune.
	if !p.o.DryRun && len(bounds) > 0 {
		if _, err := walexpiry.Save(ctx, p.repo, time.Now(), bounds); err != nil {
			return fmt.Errorf("recording the WAL expiry (no WAL removed): %w", err)
		}
	}
	hs := make([]backend.Handle, len(names))
	for i, n := range names {
		hs[i] = backend.Handle{Type: backend.WALFile, Name: n}
	}
	return p.removeAllowed(ctx, hs, "wal",
		func(h backend.Handle) string { return fmt.Sprintf("removing %s", h) },
		func(h backend.Handle) { p.rep.WALRemoved = append(p.rep.WALRemoved, h.Name) })
}
