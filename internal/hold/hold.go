package hold

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// ErrNotEnforced says the hold was recorded but the storage cannot enforce
// it: the snapshot's objects can still be deleted by whoever can delete on
// the storage.
var ErrNotEnforced = errors.New("the storage cannot enforce legal holds")

// Options tune Add and Release.
type Options struct {
	User string           // default: the current user
	Host string           // default: this machine's hostname
	Now  func() time.Time // default: time.Now
	// RecordOnly accepts storage without Object Lock: the hold is recorded
	// and Add succeeds, though nothing is enforced.
	RecordOnly bool
	// Workers bounds the legal hold requests in flight (default
	// DefaultWorkers).
	Workers int
}

// DefaultWorkers is how many legal hold requests are in flight at once:
// each is a small round trip, so many in flight hide latency.
const DefaultWorkers = 16

func (o *Options) fill() {
	if o.User == "" {
		if u, err := user.Current(); err == nil {
			o.User = u.Username
		}
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
}

// Result is what Add or Release did.
type Result struct {
	// Record is the record written; nil when the hold was already in the
	// requested state (the legal holds were then applied again).
	Record   *Record `json:"record,omitempty"`
	Objects  int     `json:"objects"`  // objects the snapshot needs
	Changed  int     `json:"changed"`  // legal holds set or cleared
	Kept     int     `json:"kept"`     // on release: objects other active holds still need
	Enforced bool    `json:"enforced"` // the storage enforces legal holds
	// RecordHeld: on add, the legal hold on the hold's record was
	// placed (it is placed before those on the snapshot's objects).
	RecordHeld bool `json:"-"`
}

// enforcer returns the Locker when the storage enforces legal holds.
func enforcer(ctx context.Context, repo *repository.Repository) (backend.Locker, error) {
	l, ok := repo.Locker()
	if !ok {
		return nil, nil
	}
	on, err := l.LockEnabled(ctx)
	if err != nil {
		return nil, fmt.Errorf("checking Object Lock on %s: %w", repo.Location(), err)
	}
	if !on {
		return nil, nil
	}
	return l, nil
}

// Add places hold caseID on snapshot sn: it records the hold, then sets a
// legal hold on every object sn needs. The repository index must be loaded.
// Adding a hold already in force records nothing new and sets the legal
// holds again (which finishes an interrupted Add).
func Add(ctx context.Context, repo *repository.Repository, sn *snapshot.Snapshot, caseID, reason string, o Options) (*Result, error) {
	o.fill()
	records, _, err := List(ctx, repo)
	if err != nil {
		return nil, err
	}
	l, err := enforcer(ctx, repo)
	if err != nil {
		return nil, err
	}
	if l == nil && !o.RecordOnly {
		// Refused before anything is recorded: a failed command must not
		// leave a hold in the history that nothing enforces.
		return nil, fmt.Errorf("%w at %s (not an S3 bucket with Object Lock): the snapshot's objects could still be deleted, so no hold was recorded; use --record-only to record a hold that is not enforced", ErrNotEnforced, repo.Location())
	}
	repo.CleanStaleTemp(ctx)
	res := &Result{Enforced: l != nil}
	if last := find(records, sn.ID, caseID); last == nil || last.Action != ActionAdd {
		rec := &Record{Snapshot: sn.ID, Case: caseID, Reason: reason, User: o.User, Host: o.Host,
			Time: o.Now().UTC(), Action: ActionAdd, Enforced: l != nil}
		// The record is written first: a hold is in force from the moment
		// it is recorded, and an interrupted Add is finished by running it
		// again.
		if err := Save(ctx, repo, rec); err != nil {
			return nil, err
		}
		res.Record = rec
		records = append(records, rec)
		sortRecords(records)
	}
	if l == nil {
		return res, nil
	}
	// The record itself is held first: without it 'hold list' would
	// forget the hold once the record's retention ends, and 'hold release'
	// could not find it, while the snapshot's objects stayed held.
	if _, err := setHolds(ctx, l, recordHandles(currentAdds(records, sn.ID, caseID)), true, o.Workers); err != nil {
		return res, fmt.Errorf("hold recorded, but placing a legal hold on its record failed (run 'nestguard hold add' again to finish): %w", err)
	}
	res.RecordHeld = true
	set, err := retention.Objects(ctx, repo, sn)
	if err != nil {
		return res, err
	}
	hs := set.Handles()
	res.Objects = len(hs)
	n, err := setHolds(ctx, l, hs, true, o.Workers)
	res.Changed = n
	if err != nil {
		return res, fmt.Errorf("hold recorded, but placing legal holds failed after %d of %d objects (run 'nestguard hold add' again to finish): %w", n, len(hs), err)
	}
	return res, set.MissingError()
}

// currentAdds returns the add records of the hold of snapshot sid and
// case caseID since its last release: the records that keep it in force
// (one, unless two Adds raced). records must be sorted as List returns
// them.
func currentAdds(records []*Record, sid id.ID, caseID string) []*Record {
	var out []*Record
	for _, r := range records {
		if r.Snapshot != sid || r.Case != caseID {
			continue
		}
		if r.Action == ActionRelease {
			out = out[:0]
			continue
		}
		out = append(out, r)
	}
	return out
}

func recordHandles(rs []*Record) []backend.Handle {
	hs := make([]backend.Handle, len(rs))
	for i, r := range rs {
		hs[i] = backend.Handle{Type: backend.HoldFile, Name: r.ID.String()}
	}
	return hs
}

// keepHistory ends the legal hold of the add records of a released hold
// and retains them, and the release record, for the repository's minimum
// retention from now: the history of a hold outlives its release by at
// least as long as any object nestguard writes.
func keepHistory(ctx context.Context, repo *repository.Repository, l backend.Locker, adds []*Record, release *Record, now time.Time, workers int) error {
	hs := recordHandles(adds)
	if repo.Config().ObjectLock != nil {
		keep := hs
		if release != nil {
			keep = append(slices.Clone(hs), recordHandles([]*Record{release})...)
		}
		if _, err := repo.ExtendRetention(ctx, keep, now.Add(repo.Config().ObjectLock.MinRetention)); err != nil {
			return err
		}
	}
	_, err := setHolds(ctx, l, hs, false, workers)
	return err
}

// Release ends hold caseID on snapshot sn: it records the release, then
// clears the legal hold on the objects of sn that no other active hold
// needs. Releasing a hold already released records nothing new and clears
// the legal holds again (which finishes an interrupted Release).
func Release(ctx context.Context, repo *repository.Repository, sn *snapshot.Snapshot, caseID, reason string, o Options) (*Result, error) {
	o.fill()
	records, _, err := List(ctx, repo)
	if err != nil {
		return nil, err
	}
	last := find(records, sn.ID, caseID)
	if last == nil {
		return nil, fmt.Errorf("snapshot %s has no hold for case %q (see 'nestguard hold list')", sn.ID.Short(), caseID)
	}
	l, err := enforcer(ctx, repo)
	if err != nil {
		return nil, err
	}
	repo.CleanStaleTemp(ctx)
	res := &Result{Enforced: l != nil}
	adds := currentAdds(records, sn.ID, caseID)
	if last.Action == ActionRelease {
		// Released before: the adds of the hold that release ended.
		adds = previousAdds(records, sn.ID, caseID)
	}
	var release *Record
	if last.Action == ActionAdd {
		rec := &Record{Snapshot: sn.ID, Case: caseID, Reason: reason, User: o.User, Host: o.Host,
			Time: o.Now().UTC(), Action: ActionRelease, Enforced: l != nil}
		// Recorded before any legal hold is cleared: no hold ends unrecorded.
		if err := Save(ctx, repo, rec); err != nil {
			return nil, err
		}
		res.Record = rec
		release = rec
		records = append(records, rec)
		sortRecords(records)
	} else {
		release = last
	}
	if l == nil {
		return res, nil
	}
	c := retention.NewCollector(repo)
	set, err := c.Objects(ctx, sn)
	if err != nil {
		return res, err
	}
	keep, err := stillHeld(ctx, repo, c, Active(records))
	if err != nil {
		return res, err
	}
	var clear []backend.Handle
	for _, h := range set.Handles() {
		if keep[h] {
			res.Kept++
			continue
		}
		clear = append(clear, h)
	}
	res.Objects = len(clear) + res.Kept
	n, err := setHolds(ctx, l, clear, false, o.Workers)
	res.Changed = n
	if err != nil {
		return res, fmt.Errorf("release recorded, but clearing legal holds failed after %d of %d objects (run 'nestguard hold release' again to finish): %w", n, len(clear), err)
	}
	// The records last: until the snapshot's legal holds are cleared, the
	// hold's add record must stay listable.
	if err := keepHistory(ctx, repo, l, adds, release, o.Now(), o.Workers); err != nil {
		return res, fmt.Errorf("release recorded and legal holds cleared, but protecting the hold's records failed (run 'nestguard hold release' again to finish): %w", err)
	}
	return res, nil
}

// previousAdds returns the add records that the last release of the hold
// of snapshot sid and case caseID ended.
func previousAdds(records []*Record, sid id.ID, caseID string) []*Record {
	var cur, prev []*Record
	for _, r := range records {
		if r.Snapshot != sid || r.Case != caseID {
			continue
		}
		if r.Action == ActionRelease {
			if len(cur) > 0 {
				prev = cur
			}
			cur = nil
			continue
		}
		cur = append(cur, r)
	}
	return prev
}

// stillHeld returns the objects the active holds need.
func stillHeld(ctx context.Context, repo *repository.Repository, c *retention.Collector, active []*Record) (map[backend.Handle]bool, error) {
	keep := make(map[backend.Handle]bool)
	loaded := make(map[string]bool)
	for _, r := range active {
		if loaded[r.Snapshot.String()] {
			continue
		}
		loaded[r.Snapshot.String()] = true
		sn, err := snapshot.Load(ctx, repo, r.Snapshot)
		if err != nil {
			return nil, fmt.Errorf("reading snapshot %s of active hold %q (needed to know which legal holds to keep): %w", r.Snapshot.Short(), r.Case, err)
		}
		set, err := c.Objects(ctx, sn)
		if err != nil {
			return nil, err
		}
		for _, h := range set.Handles() {
			keep[h] = true
		}
	}
	return keep, nil
}

func setHolds(ctx context.Context, l backend.Locker, hs []backend.Handle, on bool, workers int) (int, error) {
	return countEach(ctx, hs, workers, func(ctx context.Context, h backend.Handle) (bool, error) {
		if err := l.SetLegalHold(ctx, h, on); err != nil {
			return false, fmt.Errorf("legal hold on %s: %w", h, err)
		}
		return true, nil
	})
}

// countEach calls fn for every handle of hs, workers at a time, until one
// fails, and counts the calls that returned true.
func countEach(ctx context.Context, hs []backend.Handle, workers int, fn func(context.Context, backend.Handle) (bool, error)) (int, error) {
	var n atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, h := range hs {
		g.Go(func() error {
			ok, err := fn(gctx, h)
			if ok {
				n.Add(1)
			}
			return err
		})
	}
	err := g.Wait()
	return int(n.Load()), err
}
