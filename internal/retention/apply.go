package retention

import (
	"context"
	"fmt"
	"time"

	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// Result is what Apply did.
type Result struct {
	Objects  int           `json:"objects"`  // objects the snapshot needs
	Extended int           `json:"extended"` // of which were retained too briefly and extended
	Until    time.Time     `json:"until"`    // every object is retained at least until then
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// Apply runs after a backup of a repository with an Object Lock policy: it
// extends the retention of every object snapshot sn needs (packs it shares
// with older snapshots included) to sn.Time plus the minimum retention, so
// no object a snapshot needs can be deleted before the snapshot's own
// retention ends. Objects written by the backup itself already carry that
// retention and are only checked. Without a policy Apply does nothing.
func Apply(ctx context.Context, repo *repository.Repository, sn *snapshot.Snapshot) (*Result, error) {
	start := time.Now()
	o := repo.Config().ObjectLock
	if o == nil {
		return &Result{}, nil
	}
	set, err := Objects(ctx, repo, sn)
	if err != nil {
		return nil, fmt.Errorf("retention of snapshot %s: %w", sn.ID.Short(), err)
	}
	hs := set.Handles()
	until := sn.Time.Add(o.MinRetention)
	n, err := repo.ExtendRetention(ctx, hs, until)
	res := &Result{Objects: len(hs), Extended: n, Until: until, Elapsed: time.Since(start)}
	if err != nil {
		return res, fmt.Errorf("retention of snapshot %s: %w", sn.ID.Short(), err)
	}
	if err := set.MissingError(); err != nil {
		return res, err
	}
	return res, nil
}
