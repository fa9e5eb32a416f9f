package copier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// copyWAL copies every WAL object of the source the destination lacks,
// oldest name first, re-encrypted under the destination's key and stored
// under the same name. Copying all of it (not only what the selected base
// backups need) keeps point-in-time recovery possible up to the newest
// archived segment.
func (c *Copier) copyWAL(ctx context.Context) error {
	have := make(map[string]bool)
	err := c.dst.Backend().List(ctx, backend.WALFile, func(fi backend.FileInfo) error {
		have[fi.Name] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("destination: listing WAL: %w", err)
	}
	var missing []string
	err = c.src.Backend().List(ctx, backend.WALFile, func(fi backend.FileInfo) error {
		if !have[fi.Name] {
			missing = append(missing, fi.Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("source: listing WAL: %w", err)
	}
	slices.Sort(missing)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.o.WALWorkers)
	for _, name := range missing {
		g.Go(func() error {
			plain, err := c.src.LoadNamed(gctx, backend.WALFile, name)
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			err = c.dst.SaveNamed(gctx, backend.WALFile, name, plain)
			if errors.Is(err, repository.ErrNamedExists) {
				return nil // archived into the destination meanwhile
			}
			if err != nil {
				return fmt.Errorf("destination: %w", err)
			}
			c.P.WAL.Add(1)
			c.P.WALBytes.Add(int64(len(plain)))
			return nil
		})
	}
	return g.Wait()
}

// copyExpiry records in the destination the WAL expiry boundaries of the
// source it lacks (walexpiry.Save): the WAL copied has the gaps the
// source's prunes left on purpose, which the destination's verify must
// not report as lost. It runs before the WAL is copied.
func (c *Copier) copyExpiry(ctx context.Context) error {
	_, floors, _, err := walexpiry.Records(ctx, c.src)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if len(floors) == 0 {
		return nil
	}
	if _, err := walexpiry.Save(ctx, c.dst, time.Now(), floors.Boundaries()); err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	return nil
}
