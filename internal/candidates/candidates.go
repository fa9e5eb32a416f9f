// Package candidates keeps prune's deletion-candidate records. A prune
// never deletes a pack in the run that finds it unused: it writes a record
// naming the pack, and a later prune deletes it once the record's grace
// period has passed and the pack is still unused. Backups read the records
// when they start and do not deduplicate against the packs they name, so
// nothing a backup saves comes to depend on a pack that is about to go.
// docs/format.md ("Prune") gives the whole argument.
//
// Records are write-once sealed objects in backend.CandidateFile, like
// snapshots and hold records.
package candidates

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// Record marks packs as deletion candidates.
type Record struct {
	ID id.ID `json:"-"`
	// Time is the marking prune's clock when it wrote the record.
	Time time.Time `json:"time"`
	// NotBefore is the earliest time a prune may delete the packs: Time
	// plus the grace period the marking prune was given.
	NotBefore time.Time `json:"not_before"`
	// Packs are the packs marked, sorted.
	Packs []id.ID `json:"packs"`
	// Host and User name who ran the marking prune.
	Host string `json:"host,omitempty"`
	User string `json:"user,omitempty"`
}

// maxPacks bounds the packs one record names (an object is at most
// repository.maxUnpackedObjectLen when unpacked; 65 bytes of JSON per pack).
const maxPacks = 1 << 20

func (r *Record) check() error {
	switch {
	case r.Time.IsZero():
		return errors.New("candidate record: no time")
	case r.NotBefore.Before(r.Time):
		return fmt.Errorf("candidate record: not_before %s is before its time %s", r.NotBefore.Format(time.RFC3339), r.Time.Format(time.RFC3339))
	case len(r.Packs) == 0:
		return errors.New("candidate record: no packs")
	case len(r.Packs) > maxPacks:
		return fmt.Errorf("candidate record: %d packs, more than the limit of %d", len(r.Packs), maxPacks)
	}
	return nil
}

// Save stores rec as a new candidate record and sets its ID. Its packs
// are sorted first.
func Save(ctx context.Context, s snapshot.Store, rec *Record) error {
	slices.SortFunc(rec.Packs, compareID)
	rec.Packs = slices.Compact(rec.Packs)
	if err := rec.check(); err != nil {
		return err
	}
	oid, err := s.SaveObject(ctx, backend.CandidateFile, rec)
	if err != nil {
		return fmt.Errorf("saving deletion-candidate record: %w", err)
	}
	rec.ID = oid
	return nil
}

// Damaged is a record List could not use: its bytes do not match its
// name, do not authenticate, do not decode, or do not check. It wraps
// repository.ErrObjectCorrupted.
type Damaged struct {
	ID  id.ID
	Err error
}

func (d *Damaged) Error() string {
	return fmt.Sprintf("deletion-candidate record %s: %v", d.ID.Short(), d.Err)
}

func (d *Damaged) Unwrap() error { return d.Err }

// List loads every candidate record, oldest first. A record that is
// damaged is returned in damaged (each a *Damaged): no prune can read it
// either, so no prune deletes the packs it names, and a backup may ignore
// it. A record listed and gone when read was removed meanwhile by its
// prune, which had deleted or kept its packs and unindexed the deleted
// ones first: it is left out (a writer that had read the index before
// finds those packs gone when it checks again before saving). Any other
// failure (listing, a read that fails) is err: a backup must not start
// without knowing every readable record.
func List(ctx context.Context, s snapshot.Store) (recs []*Record, damaged []error, err error) {
	ids, err := s.ListObjects(ctx, backend.CandidateFile)
	if err != nil {
		return nil, nil, err
	}
	for _, oid := range ids {
		var r Record
		if err := s.LoadObject(ctx, backend.CandidateFile, oid, &r); err != nil {
			if errors.Is(err, repository.ErrObjectCorrupted) {
				damaged = append(damaged, &Damaged{ID: oid, Err: err})
				continue
			}
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, nil, fmt.Errorf("deletion-candidate record %s: %w", oid.Short(), err)
		}
		if err := r.check(); err != nil {
			damaged = append(damaged, &Damaged{ID: oid, Err: fmt.Errorf("%w: %v", repository.ErrObjectCorrupted, err)})
			continue
		}
		r.ID = oid
		recs = append(recs, &r)
	}
	slices.SortFunc(recs, func(a, b *Record) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return compareID(a.ID, b.ID)
	})
	return recs, damaged, nil
}

// Packs returns the set of packs the records name.
func Packs(recs []*Record) map[id.ID]struct{} {
	set := make(map[id.ID]struct{})
	for _, r := range recs {
		for _, p := range r.Packs {
			set[p] = struct{}{}
		}
	}
	return set
}

func compareID(a, b id.ID) int { return bytes.Compare(a[:], b[:]) }
