package retention

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// ApplyMany is Apply for several snapshots at once, the way to finish a
// retention extension that failed after a backup or copy (nestguard
// retention apply): every object is retained until the latest date any of
// the snapshots needs it (its time plus the minimum retention). Objects
// shared by many snapshots are checked once. Objects already retained
// long enough are only checked, so running it again is cheap and
// harmless. Snapshots whose objects cannot all be found are reported in
// the error; the objects found are still extended. Result.Until is left
// zero: each object has its own date.
func ApplyMany(ctx context.Context, repo *repository.Repository, snaps []*snapshot.Snapshot) (*Result, error) {
	start := time.Now()
	o := repo.Config().ObjectLock
	if o == nil {
		return nil, fmt.Errorf("repository at %s has no Object Lock policy: retention applies only to repositories created with --object-lock", repo.Location())
	}
	c := NewCollector(repo)
	need := make(map[backend.Handle]time.Time)
	var missing []error
	for _, sn := range snaps {
		set, err := c.Objects(ctx, sn)
		if err != nil {
			return nil, fmt.Errorf("retention of snapshot %s: %w", sn.ID.Short(), err)
		}
		until := sn.Time.Add(o.MinRetention)
		for _, h := range set.Handles() {
			if until.After(need[h]) {
				need[h] = until
			}
		}
		if err := set.MissingError(); err != nil {
			missing = append(missing, err)
		}
	}
	// One request batch per date: snapshots' dates differ, objects of one
	// snapshot share it.
	byUntil := make(map[time.Time][]backend.Handle)
	for h, until := range need {
		byUntil[until] = append(byUntil[until], h)
	}
	dates := make([]time.Time, 0, len(byUntil))
	for d := range byUntil {
		dates = append(dates, d)
	}
	slices.SortFunc(dates, time.Time.Compare)
	res := &Result{Objects: len(need)}
	for _, until := range dates {
		n, err := repo.ExtendRetention(ctx, byUntil[until], until)
		res.Extended += n
		if err != nil {
			res.Elapsed = time.Since(start)
			return res, err
		}
	}
	res.Elapsed = time.Since(start)
	return res, errors.Join(missing...)
}
