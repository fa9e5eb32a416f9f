package commit

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/candidates"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/needs"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// recheck is step 2 of Save. A prune deletes the packs of a record only
// after listing the snapshots, at or after the record's NotBefore, and
// keeps those that hold a blob a listed snapshot needs. A record this
// writer did not know when it decided to reuse a blob may name the
// blob's pack; if the record is due (NotBefore less Skew has passed on
// this host's clock, or on the store's where it tells a later time: see
// now), its prune may list the snapshots before sn is saved. So
// every blob sn needs whose locations are all in avoided packs (those of
// the records known at Begin and of the due ones) is read and stored
// again, in a new pack no record names, and flushed.
//
// A record may also have come and gone during a long run (its prune
// deleted its packs and removed it): that prune removed the index objects
// listing the packs first, so when an index object this writer read is
// gone, the packs no longer stored are avoided too (and a blob only they
// held fails the Save), and taken out of the index objects this writer
// wrote: they may be its own packs, deleted before it indexed them. A new round follows while new records became due
// or index objects went meanwhile. Without either (the common case) it
// costs a listing of the records and one of the index objects.
func (s *Step) recheck(ctx context.Context, sn *snapshot.Snapshot) error {
	if s.o.UnsafeIgnoreCandidates {
		return nil
	}
	// A copy decides on blobs for its next snapshot before this Save (its
	// cached mappings): once avoid has grown, every Save checks.
	walk := s.grown
	for round := 0; ; round++ {
		// The records first: a record removed after this listing had its
		// index objects removed before the next one.
		recs, err := listCandidates(ctx, s.repo)
		if err != nil {
			return fmt.Errorf("no snapshot saved: %w", err)
		}
		now, err := s.now(ctx)
		if err != nil {
			return fmt.Errorf("no snapshot saved: %w", err)
		}
		due := s.due(recs, now)
		gone, err := s.gonePacks(ctx)
		if err != nil {
			return fmt.Errorf("no snapshot saved: %w", err)
		}
		if len(due) == 0 && len(gone) == 0 && !walk {
			return nil
		}
		if round == maxRechecks {
			return fmt.Errorf("no snapshot saved: prunes kept marking or deleting the packs this run stored or reused (%d rounds); a prune's --grace must be longer than %s", round, Skew)
		}
		if len(gone) > 0 {
			if err := s.repo.UnlistPacks(ctx, gone); err != nil {
				return fmt.Errorf("no snapshot saved: %w", err)
			}
		}
		if len(due) > 0 || len(gone) > 0 {
			s.learn(due)
			for _, p := range gone {
				s.avoid[p] = struct{}{}
			}
			s.repo.SetCandidatePacks(maps.Clone(s.avoid))
			s.grown = true
			s.repo.Logger().Info("a prune marked or deleted packs during the run: storing again the blobs the snapshot needs that only those packs hold",
				"records", len(due), "packs_deleted", len(gone))
		}
		if err := s.storeAgain(ctx, sn); err != nil {
			return fmt.Errorf("no snapshot saved: %w", err)
		}
		if err := s.repo.Flush(ctx); err != nil {
			return err
		}
		walk = false
	}
}

// gonePacks returns the packs the index locates blobs in that are no
// longer stored and not avoided yet, when an index object this writer
// read or wrote is gone that was not seen gone before.
func (s *Step) gonePacks(ctx context.Context) ([]id.ID, error) {
	objs, err := s.repo.IndexObjectsGone(ctx)
	if err != nil {
		return nil, err
	}
	fresh := false
	for _, oid := range objs {
		if _, ok := s.goneIndex[oid]; !ok {
			s.goneIndex[oid] = struct{}{}
			fresh = true
		}
	}
	if !fresh {
		return nil, nil
	}
	missing, err := s.repo.MissingPacks(ctx)
	if err != nil {
		return nil, err
	}
	var out []id.ID
	for _, p := range missing {
		if _, ok := s.avoid[p]; !ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// dateLag bounds how far behind the store's time when it answered the
// Date of its answer may be: rounded down to the second, from a clock
// the server may read once a second.
const dateLag = 2 * time.Second

// now is the time the writer judges records due by: this host's clock,
// or the store's where the store tells it (backend.Clock) and it is
// later. A prune checks its own clock against the store's (within Skew),
// so by the store's time a writer whose clock is behind does not take a
// record its prune may already act on for one not due. The store's time
// is rounded down to its second, and a server may date its answers by a
// clock it reads once a second (versitygw does): dateLag is added, to
// judge records by (not to warn by). A clock surely further than Skew
// from the store's is warned about once.
func (s *Step) now(ctx context.Context) (time.Time, error) {
	c, ok := backend.As[backend.Clock](s.repo.Backend())
	if !ok {
		return time.Now(), nil
	}
	before := time.Now()
	st, err := c.StoreTime(ctx)
	after := time.Now()
	if err != nil {
		return time.Time{}, err
	}
	if st.IsZero() {
		return after, nil
	}
	// The store's time when it answered is in [st, late).
	late := st.Add(dateLag)
	if behind, ahead := st.Sub(after), before.Sub(late); (behind > Skew || ahead > Skew) && !s.clockWarned {
		s.clockWarned = true
		way, by := "behind", behind
		if ahead > Skew {
			way, by = "ahead of", ahead
		}
		s.repo.Logger().Warn(fmt.Sprintf("this host's clock is %s %s the storage's: prune's records are judged by the later of the two; set the clock right (NTP)", by.Round(time.Second), way),
			"storage_time", st.UTC().Format(time.RFC3339), "host_time", after.UTC().Format(time.RFC3339))
	}
	if late.After(after) {
		return late, nil
	}
	return after, nil
}

// due returns the records of recs not known yet whose NotBefore less
// Skew is not after now.
func (s *Step) due(recs []*candidates.Record, now time.Time) []*candidates.Record {
	var out []*candidates.Record
	for _, r := range recs {
		if _, ok := s.known[r.ID]; ok {
			continue
		}
		if !now.Before(r.NotBefore.Add(-Skew)) {
			out = append(out, r)
		}
	}
	return out
}

// storeAgain stores again every blob sn needs (internal/needs) that the
// repository does not hold outside the avoided packs.
func (s *Step) storeAgain(ctx context.Context, sn *snapshot.Snapshot) error {
	n, err := needs.Of(sn)
	if err != nil {
		return err
	}
	for _, b := range n.Blobs {
		if err := s.keep(ctx, b.ID, index.DataBlob); err != nil {
			return err
		}
	}
	v := tree.Visitor[struct{}]{
		Visit: func(ctx context.Context, t *tree.Tree, _ struct{}) (func(*tree.Node) struct{}, error) {
			if err := s.keep(ctx, t.ID, index.TreeBlob); err != nil {
				return nil, err
			}
			for _, node := range t.Nodes {
				for _, bid := range node.Content {
					if err := s.keep(ctx, bid, index.DataBlob); err != nil {
						return nil, fmt.Errorf("%s: %w", tree.Show(node.Name), err)
					}
				}
			}
			return nil, nil
		},
		LoadError: func(tid id.ID, _ struct{}, err error) error {
			return fmt.Errorf("tree %s of the snapshot cannot be read any more (its packs were marked for deletion during the run): %w", tid.Short(), err)
		},
	}
	return v.Run(ctx, s.repo, tree.Roots(n.Tree))
}

// keep stores blob bid again unless it is reusable.
func (s *Step) keep(ctx context.Context, bid id.ID, t index.BlobType) error {
	if s.repo.Reusable(bid) {
		return nil
	}
	plain, err := s.repo.LoadBlob(ctx, bid, nil)
	if err != nil {
		return fmt.Errorf("%s blob %s is only in packs marked for deletion during the run, and cannot be read any more: %w", t, bid.Short(), err)
	}
	if _, err := s.repo.SaveBlobWithID(ctx, t, bid, plain); err != nil {
		return fmt.Errorf("storing %s blob %s again: %w", t, bid.Short(), err)
	}
	return nil
}
