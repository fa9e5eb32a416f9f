package walexpiry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
)

// Repo is what Expire needs of a repository (repository.Repository).
type Repo interface {
	Backend() backend.Backend
	// CanDelete reports whether the store allows removing h now, and
	// otherwise until when it is retained.
	CanDelete(ctx context.Context, h backend.Handle) (ok bool, until time.Time, err error)
}

// List returns the WAL objects of the repository.
func List(ctx context.Context, r Repo) ([]backend.FileInfo, error) {
	var out []backend.FileInfo
	err := r.Backend().List(ctx, backend.WALFile, func(fi backend.FileInfo) error {
		out = append(out, fi)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing archived WAL: %w", err)
	}
	return out, nil
}

// Retained is a WAL object the plan removes but the store does not allow
// removing yet (Object Lock retention or a legal hold).
type Retained struct {
	Object
	// Until is the end of its retention; under a legal hold it may be
	// zero or past, and the object stays until the hold is released.
	Until time.Time `json:"retained_until,omitzero"`
	Held  bool      `json:"legal_hold,omitempty"`
}

// Result is what Expire did.
type Result struct {
	Removed      []Object   `json:"removed"`
	RemovedBytes int64      `json:"removed_bytes"`
	Retained     []Retained `json:"retained"`
}

// Expire removes the WAL objects p removes, oldest name first, except
// those the store still retains, which it reports. With dryRun it only
// checks which ones the store would allow. An object already gone (a
// concurrent or earlier interrupted prune) counts as removed. It tries
// every object and returns the failures joined.
func Expire(ctx context.Context, r Repo, p *Plan, dryRun bool) (*Result, error) {
	res := &Result{Removed: []Object{}, Retained: []Retained{}}
	var errs []error
	for _, o := range p.Remove {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		h := backend.Handle{Type: backend.WALFile, Name: o.Name}
		ok, until, err := r.CanDelete(ctx, h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			res.Retained = append(res.Retained, Retained{Object: o, Until: until, Held: !time.Now().Before(until)})
			continue
		}
		if !dryRun {
			if err := r.Backend().Remove(ctx, h); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing %s: %w", h, err))
				continue
			}
		}
		res.Removed = append(res.Removed, o)
		res.RemovedBytes += o.Size
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("%d of %d WAL objects could not be removed: %w", len(errs), len(p.Remove), errors.Join(errs...))
	}
	return res, nil
}
