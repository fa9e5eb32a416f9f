package main

import (
	"context"
	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/stats"
)

func (a *app) statsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show repository sizes and deduplication and compression ratios",
		Long: `Show the repository's configuration (its id, format, and the algorithms
fixed at init) and what it holds: snapshots, logical and stored sizes, the
deduplication and compression ratios, and the memory its index takes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runStats(cmd.Context())
		},
	}
}

// runStats prints the repository's configuration and sizes.
func (a *app) runStats(ctx context.Context) error {
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		st, err := stats.Compute(ctx, repo)
		if err != nil {
			return err
		}
		cfg := repo.Config()
		if a.jsonOut {
			if err := a.printJSON(statsJSON{current(), st, cfg}); err != nil {
				return err
			}
			return unreadableSnapshots(a, st.Unreadable)
		}
		alg := cfg.Algorithms
		a.printf("repository:         %s, format %d, created %s\n", cfg.ID[:8], cfg.Version, cfg.Created.Format("2006-01-02 15:04 MST"))
		a.printf("encryption:         %s, key slots by %s\n", alg.Encryption, alg.KDF)
		a.printf("blob ids:           %s\n", alg.BlobID)
		a.printf("object ids:         %s\n", alg.ObjectID)
		a.printf("chunker:            %s, %d/%d/%d KiB (min/avg/max)\n", alg.Chunker, cfg.Chunker.Min>>10, cfg.Chunker.Avg>>10, cfg.Chunker.Max>>10)
		a.printf("compression:        %s %s\n", alg.Compression, cfg.Compression)
		if l := cfg.ObjectLock; l != nil {
			a.printf("object lock:        %s mode, at least %s\n", l.Mode, repository.FormatRetention(l.MinRetention))
		}
		a.printf("snapshots:          %d\n", st.Snapshots)
		a.printf("logical size:       %s in %d files (what a restore of every snapshot writes)\n", progress.Bytes(st.LogicalSize), st.Files)
		a.printf("unique data:        %s in %d blobs\n", progress.Bytes(st.UniqueSize), st.Blobs)
		a.printf("stored size:        %s in %d packs\n", progress.Bytes(st.StoredSize), st.Packs)
		a.printf("dedup ratio:        %.2fx\n", st.DedupRatio)
		a.printf("compression ratio:  %.2fx\n", st.CompressionRatio)
		a.printf("total ratio:        %.2fx\n", st.TotalRatio)
		a.printf("index memory:       %s (%.1f bytes per blob)\n", progress.Bytes(int64(st.IndexMemory)), st.IndexBytesPerBlob)
		return unreadableSnapshots(a, st.Unreadable)
	})
}
