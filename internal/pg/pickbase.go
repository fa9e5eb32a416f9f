package pg

import (
	"context"
	"fmt"

	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// pickBase chooses the base backup (and returns the status it read): the one CheckTarget picks, which also
// refuses a target outside the recoverable window or beyond a WAL gap, or
// the one o.From names, if the WAL from it reaches the target.
func pickBase(ctx context.Context, repo *repository.Repository, o RestoreOptions) (*snapshot.Snapshot, *BackupInfo, *StatusReport, error) {
	// The WAL expiry records do not change which base backup and
	// target are possible: a restore does not read them.
	st, err := StatusWith(ctx, repo, StatusOptions{NoWALExpiry: true})
	if err != nil {
		return nil, nil, nil, err
	}
	var base *snapshot.Snapshot
	if o.From == "" {
		if base, err = st.CheckTarget(ctx, o.Target); err != nil {
			return nil, nil, nil, err
		}
	} else {
		list, unreadable, err := snapshot.List(ctx, repo)
		if err != nil {
			return nil, nil, nil, err
		}
		if base, err = snapshot.Find(list, unreadable, o.From, snapshot.Filter{Kind: snapshot.KindPostgres}); err != nil {
			return nil, nil, nil, fmt.Errorf("--snapshot: %w", err)
		}
		if err := st.CheckFrom(ctx, o.Target, base); err != nil {
			return nil, nil, nil, fmt.Errorf("--snapshot %s: %w", base.ID.Short(), err)
		}
	}
	info, err := pgmeta.Info(base)
	if err != nil {
		return nil, nil, nil, err
	}
	return base, info, st, nil
}
