package hold

import (
	"context"
	"fmt"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// Partial is an active hold recorded as enforced whose objects do not all
// carry a legal hold: a 'hold add' stopped part way (killed, or the
// storage failed), and running it again finishes it.
type Partial struct {
	Record  *Record `json:"-"`
	Objects int     `json:"objects"` // objects the hold covers: the snapshot's and the hold's record
	Unheld  int     `json:"unheld"`  // of those, without a legal hold
}

// CheckEnforced asks the storage, when it enforces legal holds, whether
// every object each hold in active recorded as enforced covers carries a
// legal hold, and returns the holds where some do not. The repository's
// index is loaded if it is not.
func CheckEnforced(ctx context.Context, repo *repository.Repository, records []*Record, workers int) ([]Partial, error) {
	var check []*Record
	for _, r := range Active(records) {
		if r.Enforced {
			check = append(check, r)
		}
	}
	if len(check) == 0 {
		return nil, nil
	}
	l, err := enforcer(ctx, repo)
	if err != nil || l == nil {
		return nil, err
	}
	if err := repo.LoadIndex(ctx); err != nil {
		return nil, err
	}
	if workers <= 0 {
		workers = DefaultWorkers
	}
	// One collector for all: it reads every index object once (as
	// Release's stillHeld does), not once per hold.
	c := retention.NewCollector(repo)
	var out []Partial
	for _, r := range check {
		sn, err := snapshot.Load(ctx, repo, r.Snapshot)
		if err != nil {
			return out, fmt.Errorf("reading snapshot %s of hold %q to check its legal holds: %w", r.Snapshot.Short(), r.Case, err)
		}
		set, err := c.Objects(ctx, sn)
		if err != nil {
			return out, err
		}
		hs := append(set.Handles(), recordHandles(currentAdds(records, r.Snapshot, r.Case))...)
		unheld, err := countEach(ctx, hs, workers, func(ctx context.Context, h backend.Handle) (bool, error) {
			st, err := l.Retention(ctx, h)
			if err != nil {
				return false, fmt.Errorf("asking for the legal hold of %s: %w", h, err)
			}
			return !st.LegalHold, nil
		})
		if err != nil {
			return out, err
		}
		if unheld > 0 {
			out = append(out, Partial{Record: r, Objects: len(hs), Unheld: unheld})
		}
	}
	return out, nil
}
