// Package hold places and releases legal holds on snapshots. A hold is
// recorded in the repository (append-only records, never rewritten) and,
// on storage with Object Lock, enforced by an S3 legal hold on every object
// the snapshot needs: such objects cannot be deleted, even after their
// retention ends, until the hold is released by an explicit, recorded
// command.
package hold

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// Actions a record takes.
const (
	ActionAdd     = "add"
	ActionRelease = "release"
)

// Record is one hold event, stored as a sealed object in backend.HoldFile.
type Record struct {
	ID       id.ID     `json:"-"`
	Snapshot id.ID     `json:"snapshot"`
	Case     string    `json:"case"`
	Reason   string    `json:"reason"`
	User     string    `json:"user"`
	Host     string    `json:"host"`
	Time     time.Time `json:"time"`
	Action   string    `json:"action"`
	// Enforced says whether the storage placed (or cleared) legal holds; a
	// hold recorded with --record-only on storage without Object Lock is not.
	Enforced bool `json:"enforced"`
}

// maxText bounds the case and reason a record carries.
const maxText = 4096

func (r *Record) check() error {
	switch {
	case r.Action != ActionAdd && r.Action != ActionRelease:
		return fmt.Errorf("hold record: unknown action %q", r.Action)
	case strings.TrimSpace(r.Case) == "":
		return errors.New("a hold needs a case: give --case ID")
	case strings.TrimSpace(r.Reason) == "":
		return errors.New("a hold needs a reason: give --reason TEXT")
	case len(r.Case) > maxText || len(r.Reason) > maxText:
		return fmt.Errorf("hold case and reason are limited to %d bytes", maxText)
	case r.Snapshot.IsNull():
		return errors.New("hold record: no snapshot")
	}
	return nil
}

// Save stores rec as a new hold object and sets its ID.
func Save(ctx context.Context, s snapshot.Store, rec *Record) error {
	if err := rec.check(); err != nil {
		return err
	}
	oid, err := s.SaveObject(ctx, backend.HoldFile, rec)
	if err != nil {
		return fmt.Errorf("saving hold record: %w", err)
	}
	rec.ID = oid
	return nil
}

// Unreadable is a hold record that cannot be read or is malformed. It
// may hold a snapshot, so what it holds is unknown until the record is
// restored from a copy of the storage.
type Unreadable struct {
	ID  id.ID
	Err error
}

// Object names the record as verify and the audit log do: holds/<id>.
func (u *Unreadable) Object() string {
	return backend.Handle{Type: backend.HoldFile, Name: u.ID.String()}.String()
}

func (u *Unreadable) Error() string {
	return fmt.Sprintf("legal hold record %s cannot be read: %s", u.Object(), u.Cause())
}

// Cause is why the record cannot be read, without its name.
func (u *Unreadable) Cause() string {
	return strings.TrimPrefix(u.Err.Error(), u.Object()+": ")
}

func (u *Unreadable) Unwrap() error { return u.Err }

// Describe names the object an error of List is about (holds/<id>, or
// holds/ when it is not one record's) and why it cannot be read.
func Describe(err error) (object, cause string) {
	var u *Unreadable
	if errors.As(err, &u) {
		return u.Object(), u.Cause()
	}
	return string(backend.HoldFile), err.Error()
}

// Remedy says what to do about an unreadable hold record. It must not be
// deleted: a hold must never end because its record was damaged.
const Remedy = "restore the record from a copy of the storage (an earlier object version, a replica or a backup of the repository's storage); do not delete it: it may hold a snapshot, and a hold must never end because its record was damaged"

// RemedyFor says what to do about the hold records errs (from List)
// that could not be read: Remedy for damage, but when the storage did not
// answer for them (backend.ErrUnavailable), nothing is known to be
// damaged, and running the command again once it answers is the remedy.
func RemedyFor(errs []error) string {
	out := 0
	for _, e := range errs {
		if errors.Is(e, backend.ErrUnavailable) {
			out++
		}
	}
	const again = "the storage did not answer for them (nothing is known to be damaged): run the command again when the store answers"
	switch {
	case out == 0:
		return Remedy
	case out == len(errs):
		return again
	}
	return fmt.Sprintf("for %d of them %s; for the others, %s", out, again, Remedy)
}

// List loads every hold record, oldest first. Unreadable records are
// returned as errors (each an *Unreadable) beside the readable ones.
func List(ctx context.Context, s snapshot.Store) ([]*Record, []error, error) {
	ids, err := s.ListObjects(ctx, backend.HoldFile)
	if err != nil {
		return nil, nil, err
	}
	var (
		out  []*Record
		errs []error
	)
	for _, oid := range ids {
		var r Record
		if err := s.LoadObject(ctx, backend.HoldFile, oid, &r); err != nil {
			if ctx.Err() != nil {
				return nil, nil, err
			}
			errs = append(errs, &Unreadable{ID: oid, Err: err})
			continue
		}
		if err := r.check(); err != nil {
			errs = append(errs, &Unreadable{ID: oid, Err: err})
			continue
		}
		r.ID = oid
		out = append(out, &r)
	}
	sortRecords(out)
	return out, errs, nil
}

// sortRecords orders by time; at equal times an add precedes a release,
// so a release is never undone by an add stamped in the same instant.
func sortRecords(rs []*Record) {
	slices.SortStableFunc(rs, func(a, b *Record) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if a.Action != b.Action {
			if a.Action == ActionAdd {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID.String(), b.ID.String())
	})
}

type holdKey struct {
	snapshot id.ID
	caseID   string
}

// Active returns the holds in force: for each snapshot and case, the add
// record when the latest record of that pair is an add. records must be
// sorted as List returns them.
func Active(records []*Record) []*Record {
	last := make(map[holdKey]*Record)
	var order []holdKey
	for _, r := range records {
		k := holdKey{r.Snapshot, r.Case}
		if _, ok := last[k]; !ok {
			order = append(order, k)
		}
		if r.Action == ActionAdd {
			if cur := last[k]; cur != nil && cur.Action == ActionAdd {
				continue // still the same hold: keep when it started
			}
		}
		last[k] = r
	}
	var out []*Record
	for _, k := range order {
		if r := last[k]; r.Action == ActionAdd {
			out = append(out, r)
		}
	}
	return out
}

// find returns the latest record for snapshot and case, or nil.
func find(records []*Record, sid id.ID, caseID string) *Record {
	for i := len(records) - 1; i >= 0; i-- {
		if records[i].Snapshot == sid && records[i].Case == caseID {
			return records[i]
		}
	}
	return nil
}
