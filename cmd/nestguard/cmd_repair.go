package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/candidates"
	"github.com/nestguard/nestguard/internal/repository"
)

func (a *app) repairCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Rebuild derived repository data that is damaged",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "index",
		Short: "Rebuild the index from the pack headers",
		Long: `Rebuild what damaged index objects listed. Every pack that no readable
index object lists has its header read (each pack's header lists its blobs,
as the index does), and new index objects are written for them. Then each
index object that is damaged on storage (its bytes no longer match its name,
or do not authenticate) is deleted where the storage allows it; where it
does not (Object Lock), it is kept and superseded: once every pack is listed
by a readable index object it is only a warning in 'nestguard verify'.

A pack that no index object lists but that a prune's deletion-candidate
record names is left unindexed: a prune unindexes such a pack just before
deleting it, and the next prune finishes that.

Restores and verify already read pack headers while an index object is
damaged; repair makes that unnecessary. Safe while backups and prunes run.

Packs the index lists that are gone from storage (verify: "pack is
missing") are prune's to take out of the index, as it does for every pack
it deletes: after 'nestguard prune' the next backup stores their data
again where its sources still have it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runRepairIndex(cmd.Context())
		},
	})
	return cmd
}

// nonNil returns s, or an empty slice for nil, so JSON shows [] not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// runRepairIndex rebuilds the index from the pack headers.
func (a *app) runRepairIndex(ctx context.Context) error {
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		recs, damaged, err := candidates.List(ctx, repo)
		if err != nil {
			return fmt.Errorf("listing prune's deletion-candidate records: %w", err)
		}
		for _, d := range damaged {
			a.log.Warn("damaged deletion-candidate record ignored", "err", d)
		}
		rep, err := repo.RepairIndex(ctx, candidates.Packs(recs))
		if err != nil {
			return err
		}
		if a.jsonOut {
			out := repairIndexJSON{versioned: current(), PacksIndexed: rep.Indexed,
				Removed: nonNil(rep.Removed), Kept: []keptIndexJSON{}, BadPacks: nonNil(rep.BadPacks), Candidates: nonNil(rep.Candidates)}
			for _, k := range rep.Kept {
				out.Kept = append(out.Kept, keptIndexJSON{k.ID.String(), k.Err.Error()})
			}
			if err := a.printJSON(out); err != nil {
				return err
			}
		} else {
			a.printf("indexed %d packs from their headers\n", rep.Indexed)
			if n := len(rep.Candidates); n > 0 {
				a.printf("left %d unindexed packs that prune marked for deletion (the next prune deletes them)\n", n)
			}
			for _, r := range rep.Removed {
				a.printf("removed damaged index/%s\n", r)
			}
			for _, k := range rep.Kept {
				fmt.Fprintf(a.stderr, "warning: index/%s: %v\n", k.ID, k.Err)
			}
			for _, p := range rep.BadPacks {
				fmt.Fprintf(a.stderr, "warning: data/%s: the pack's header cannot be read, so its blobs cannot be indexed: 'nestguard verify' names the snapshots that need them, if any\n", p)
			}
		}
		return nil
	})
}
