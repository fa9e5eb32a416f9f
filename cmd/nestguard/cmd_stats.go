package main

import (
	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/stats"
)

func (a *app) statsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show repository sizes and deduplication and compression ratios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return a.withRepo(ctx, true, func(repo *repository.Repository) error {
				st, err := stats.Compute(ctx, repo)
				if err != nil {
					return err
				}
				if a.jsonOut {
					return a.printJSON(st)
				}
				a.printf("snapshots:          %d\n", st.Snapshots)
				a.printf("logical size:       %s in %d files (what a restore of every snapshot writes)\n", progress.Bytes(st.LogicalSize), st.Files)
				a.printf("unique data:        %s in %d blobs\n", progress.Bytes(st.UniqueSize), st.Blobs)
				a.printf("stored size:        %s in %d packs\n", progress.Bytes(st.StoredSize), st.Packs)
				a.printf("dedup ratio:        %.2fx\n", st.DedupRatio)
				a.printf("compression ratio:  %.2fx\n", st.CompressionRatio)
				a.printf("total ratio:        %.2fx\n", st.TotalRatio)
				a.printf("index memory:       %s (%.1f bytes per blob)\n", progress.Bytes(int64(st.IndexMemory)), st.IndexBytesPerBlob)
				return nil
			})
		},
	}
}
