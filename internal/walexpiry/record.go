package walexpiry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// A WAL expiry record says which WAL a prune removed on purpose: per
// database system, the segment (the start segment of its PITR window's
// anchor, System.Anchor) from which on it kept every WAL object. WAL
// before it may be gone by design: nothing records what an older,
// forgotten base backup spanned. Verify reads the records to tell WAL
// expired on purpose from WAL lost: a segment missing from the WAL a
// kept base backup at or after the boundary recovers through is damage.
//
// Records are write-once sealed objects in backend.ExpiryFile, like
// candidate and hold records; a prune writes one before it removes any
// WAL, and only when it moves a system's boundary on. The highest
// boundary of each system, over all records, holds. A prune that dies
// after its record and before its deletions leaves WAL that the record
// says may be gone: nothing is reported missing that is there.

// Record is one WAL expiry record.
type Record struct {
	ID id.ID `json:"-"`
	// Time is the writing command's clock (prune, or copy into this
	// repository).
	Time time.Time `json:"time"`
	// Systems are the boundaries the record sets, by system identifier.
	Systems []Boundary `json:"systems"`
}

// Boundary is where WAL expiry of one database system stops.
type Boundary struct {
	SystemID uint64 `json:"system_identifier,string"`
	// From is a WAL segment name: WAL before its position (whatever the
	// timeline) may have been removed on purpose; from it on none was.
	From string `json:"from"`
}

func (r *Record) check() error {
	if r.Time.IsZero() {
		return errors.New("WAL expiry record: no time")
	}
	if len(r.Systems) == 0 {
		return errors.New("WAL expiry record: no system")
	}
	for _, b := range r.Systems {
		if !pgmeta.IsSegment(b.From) {
			return fmt.Errorf("WAL expiry record: system %d: %q is not a WAL segment name", b.SystemID, b.From)
		}
	}
	return nil
}

// Boundaries are where the plan's expiry stops, per system: the start
// segment of each system's anchor. Nothing at or after it is removed
// (System.decide).
func (p *Plan) Boundaries() []Boundary {
	var out []Boundary
	for _, s := range p.Systems {
		out = append(out, Boundary{SystemID: s.ID, From: s.Anchor.StartWAL})
	}
	return out
}

// Floors are the boundaries of a repository's expiry records: per
// system, the highest From (by position) of any record.
type Floors map[uint64]string

// Raise adds b to f: the higher boundary of a system wins. It reports
// whether f changed.
func (f Floors) Raise(b Boundary) bool {
	cur, ok := f[b.SystemID]
	if ok {
		p, _ := position(cur)
		q, _ := position(b.From)
		if q <= p {
			return false
		}
	}
	f[b.SystemID] = b.From
	return true
}

// Boundaries lists f by system identifier.
func (f Floors) Boundaries() []Boundary {
	var out []Boundary
	for _, sys := range slices.Sorted(maps.Keys(f)) {
		out = append(out, Boundary{SystemID: sys, From: f[sys]})
	}
	return out
}

// DamagedRecord is an expiry record that cannot be used: its bytes do
// not authenticate, do not decode, or do not check. It wraps
// repository.ErrObjectCorrupted.
type DamagedRecord struct {
	ID  id.ID
	Err error
}

func (d *DamagedRecord) Error() string {
	return fmt.Sprintf("WAL expiry record %s: %v", d.ID.Short(), d.Err)
}

func (d *DamagedRecord) Unwrap() error { return d.Err }

// recordReads is how many expiry records Records reads at once.
const recordReads = 16

// Records loads every expiry record, oldest first, and the floors they
// set. A damaged record is returned in damaged (each a *DamagedRecord);
// any other failure is err.
func Records(ctx context.Context, s snapshot.Store) (recs []*Record, f Floors, damaged []error, err error) {
	ids, err := s.ListObjects(ctx, backend.ExpiryFile)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listing WAL expiry records: %w", err)
	}
	// Read like snapshots (snapshot.List): several at once, small
	// objects whose reads are mostly waiting, of which a repository
	// pruned daily for years holds thousands.
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(recordReads)
	for _, oid := range ids {
		g.Go(func() error {
			var r Record
			err := s.LoadObject(gctx, backend.ExpiryFile, oid, &r)
			if err == nil {
				if cerr := r.check(); cerr != nil {
					err = fmt.Errorf("%w: %v", repository.ErrObjectCorrupted, cerr)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				r.ID = oid
				recs = append(recs, &r)
			case errors.Is(err, repository.ErrObjectCorrupted):
				damaged = append(damaged, &DamagedRecord{ID: oid, Err: err})
			case errors.Is(err, fs.ErrNotExist):
				// removed meanwhile (only by hand: nestguard never removes one)
			default:
				return fmt.Errorf("WAL expiry record %s: %w", oid.Short(), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, nil, err
	}
	f = Floors{}
	for _, r := range recs {
		for _, b := range r.Systems {
			f.Raise(b)
		}
	}
	slices.SortFunc(damaged, func(a, b error) int {
		return slices.Compare(a.(*DamagedRecord).ID[:], b.(*DamagedRecord).ID[:])
	})
	slices.SortFunc(recs, func(a, b *Record) int {
		return cmp.Or(a.Time.Compare(b.Time), slices.Compare(a.ID[:], b.ID[:]))
	})
	return recs, f, damaged, nil
}

// Save writes, before a prune removes any WAL, a record of the
// boundaries bs that are above the floors s's records set already, and
// returns it; nil when every boundary is recorded already (nothing is
// written). The record must be durable before the first deletion: a
// segment removed with no record saying so would be reported lost.
func Save(ctx context.Context, s snapshot.Store, now time.Time, bs []Boundary) (*Record, error) {
	_, f, _, err := Records(ctx, s)
	if err != nil {
		return nil, err
	}
	rec := &Record{Time: now.UTC()}
	for _, b := range bs {
		if f.Raise(b) {
			rec.Systems = append(rec.Systems, b)
		}
	}
	if len(rec.Systems) == 0 {
		return nil, nil
	}
	if err := rec.check(); err != nil {
		return nil, err
	}
	oid, err := s.SaveObject(ctx, backend.ExpiryFile, rec)
	if err != nil {
		return nil, fmt.Errorf("saving WAL expiry record: %w", err)
	}
	rec.ID = oid
	return rec, nil
}

// ForCopy returns the boundaries of src, a copy's source's floors, that the
// copy may record in its destination: the destination holds the WAL
// segments dst, the source those in have. A destination that holds a
// segment the source lacks below a system's boundary keeps WAL the
// source expired (it keeps base backups longer): the source's boundary
// would excuse the destination losing that WAL, so it is left out, and
// the destination's own boundaries (its prunes', earlier copies') hold.
// Otherwise the destination lacks what the source expired, as the
// source does, and the source's boundary accounts for it.
func ForCopy(src Floors, have, dst map[string]bool) []Boundary {
	lowest, keeps := uint64(0), false // the lowest segment only the destination holds
	for name := range dst {
		if p, ok := position(name); ok && !have[name] && (!keeps || p < lowest) {
			lowest, keeps = p, true
		}
	}
	var out []Boundary
	for _, b := range src.Boundaries() {
		if from, ok := position(b.From); ok && (!keeps || lowest >= from) {
			out = append(out, b)
		}
	}
	return out
}
