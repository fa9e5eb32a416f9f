package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// commitOptions configure the commit step (internal/commit) of every
// command that saves a snapshot: backup, pg backup and copy.
func (a *app) commitOptions() commit.Options {
	return commit.Options{Retain: a.retain, UnsafeIgnoreCandidates: unsafePrune}
}

// retain extends the Object Lock retention of everything sn needs; the
// commit step calls it after saving a snapshot into a repository with an
// Object Lock policy. A failure names the command that finishes it:
// 'retention apply'.
func (a *app) retain(ctx context.Context, repo *repository.Repository, sn *snapshot.Snapshot) error {
	res, err := retention.Apply(ctx, repo, sn)
	if err != nil {
		return fmt.Errorf("run 'nestguard --repo %s retention apply %s' to finish: %w", a.repo, sn.ID.Short(), err)
	}
	a.log.Info("retention applied", "snapshot", sn.ID.Short(), "objects", res.Objects, "extended", res.Extended,
		"until", res.Until, "elapsed", res.Elapsed)
	a.printf("retention: %d objects kept until at least %s (%d extended)\n", res.Objects, fmtTime(res.Until), res.Extended)
	return nil
}

func (a *app) retentionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Apply the repository's Object Lock retention",
	}
	apply := &cobra.Command{
		Use:   "apply [SNAPSHOT...]",
		Short: "Extend the retention of what snapshots need (all snapshots by default)",
		Long: `Extend the Object Lock retention of every object the snapshots need (their
packs, every copy of a blob stored twice included, index objects,
snapshot object, config, key slots and, for PostgreSQL, WAL) to each snapshot's time plus the repository's minimum
retention, as backup and copy do after saving a snapshot.

Run it when backup or copy reports that a snapshot was saved but its
retention could not be fully applied: a copy that is run again skips
snapshots already copied, so it would not finish the retention. Objects
already retained long enough are only checked, so running it again, or
on every snapshot, is harmless. Only for repositories created with
--object-lock. On S3 it needs the backup writer's or the prune/retention
operator's permissions (docs/storage.md, "S3 roles").`,
		Example: `  nestguard retention apply 4f2a9c1e
  nestguard retention apply`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.retentionApply(cmd.Context(), args)
		},
	}
	cmd.AddCommand(apply)
	return cmd
}

func (a *app) retentionApply(ctx context.Context, refs []string) error {
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		if repo.Config().ObjectLock == nil {
			return fmt.Errorf("repository at %s has no Object Lock policy: retention applies only to repositories created with --object-lock", repo.Location())
		}
		list, listErrs, err := snapshot.List(ctx, repo)
		if err != nil {
			return err
		}
		snaps := list
		if len(refs) > 0 {
			snaps = make([]*snapshot.Snapshot, len(refs))
			for i, ref := range refs {
				if snaps[i], err = snapshot.Find(list, listErrs, ref, snapshot.Filter{}); err != nil {
					return err
				}
			}
			listErrs = nil // only the named snapshots matter
		}
		res, err := retention.ApplyMany(ctx, repo, snaps)
		if res != nil {
			if a.jsonOut {
				a.printJSON(retentionJSON{current(), len(snaps), res.Objects, res.Extended, err == nil && len(listErrs) == 0})
			} else {
				a.printf("retention: %d snapshots, %d objects checked, %d extended\n", len(snaps), res.Objects, res.Extended)
			}
		}
		if err != nil {
			return fmt.Errorf("retention not fully applied (run 'nestguard retention apply' again): %w", err)
		}
		if len(listErrs) > 0 {
			return fmt.Errorf("%d snapshots could not be read, and their objects were not extended: %w", len(listErrs), errors.Join(listErrs...))
		}
		return nil
	})
}
