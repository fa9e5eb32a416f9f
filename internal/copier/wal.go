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

// walNames lists the names of r's WAL objects.
func walNames(ctx context.Context, r *repository.Repository) (map[string]bool, error) {
	names := make(map[string]bool)
	err := r.Backend().List(ctx, backend.WALFile, func(fi backend.FileInfo) error {
		names[fi.Name] = true
		return nil
	})
	return names, err
}

// copyWAL copies every WAL object of the source the destination lacks,
// oldest name first, re-encrypted under the destination's key and stored
// under the same name. Copying all of it (not only what the selected base
// backups need) keeps point-in-time recovery possible up to the newest
// archived segment. have and dst are the source's and the destination's
// WAL names.
func (c *Copier) copyWAL(ctx context.Context, have, dst map[string]bool) error {
	var missing []string
	for name := range have {
		if !dst[name] {
			missing = append(missing, name)
		}
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
// not report as lost; except where the destination keeps WAL the source
// expired (walexpiry.ForCopy). It runs before the WAL is copied; have and
// dst are the source's and the destination's WAL names. The source's
// records that cannot be read are returned (their errors' text): Run
// reports them once it has copied the rest.
func (c *Copier) copyExpiry(ctx context.Context, have, dst map[string]bool) (unreadable []string, err error) {
	_, floors, damaged, err := walexpiry.Records(ctx, c.src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	for _, d := range damaged {
		unreadable = append(unreadable, d.Error())
	}
	bs := walexpiry.ForCopy(floors, have, dst)
	if len(bs) == 0 {
		return unreadable, nil
	}
	if _, err := walexpiry.Save(ctx, c.dst, time.Now(), bs); err != nil {
		return unreadable, fmt.Errorf("destination: %w", err)
	}
	return unreadable, nil
}
