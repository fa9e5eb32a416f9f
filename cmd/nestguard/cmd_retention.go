package main

import (
	"context"
	"fmt"

	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// applyRetention extends the Object Lock retention of everything sn needs,
// after a backup or copy into a repository with an Object Lock policy.
func (a *app) applyRetention(ctx context.Context, repo *repository.Repository, sn *snapshot.Snapshot) error {
	if repo.Config().ObjectLock == nil {
		return nil
	}
	res, err := retention.Apply(ctx, repo, sn)
	if err != nil {
		return fmt.Errorf("snapshot %s saved, but its retention could not be fully applied (run the backup again to retry): %w", sn.ID.Short(), err)
	}
	a.log.Info("retention applied", "snapshot", sn.ID.Short(), "objects", res.Objects, "extended", res.Extended,
		"until", res.Until, "elapsed", res.Elapsed)
	a.printf("retention: %d objects kept until at least %s (%d extended)\n", res.Objects, fmtTime(res.Until), res.Extended)
	return nil
}
