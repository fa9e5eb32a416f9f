package copier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// copyBlobs reads the needed source blobs, grouped by pack so each pack is
// read with one ranged request, Workers packs at a time, and saves each
// into the destination, which stores it only if it lacks it.
func (c *Copier) copyBlobs(ctx context.Context, need map[id.ID]struct{}) error {
	byPack := make(map[id.ID][]index.Entry)
	for bid := range need {
		if _, ok := c.blob(bid); ok {
			continue // learnt from a seed after it was found missing
		}
		e, err := c.src.FindBlob(ctx, bid)
		switch {
		case errors.Is(err, index.ErrIncomplete): // the local index cache failed a read
			return fromSource("source: blob %s is %w; run the copy again", bid.Short(), err)
		case err != nil:
			return fromSource("source: blob %s is %w: the source is damaged; run 'nestguard verify' on it", bid.Short(), err)
		}
		byPack[e.Pack] = append(byPack[e.Pack], e)
	}
	packs := make([]id.ID, 0, len(byPack))
	for p := range byPack {
		packs = append(packs, p)
	}
	slices.SortFunc(packs, func(a, b id.ID) int { return strings.Compare(string(a[:]), string(b[:])) })

	// A source pack that does not read ends the reads of the others
	// (gctx), not the destination's writes: a pack upload cut off by a
	// cancelled context fails the destination's writer for good, and the
	// snapshots after this one must still be copied.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.o.Workers)
	for _, pid := range packs {
		g.Go(func() error {
			return c.src.LoadPackBlobs(gctx, pid, byPack[pid], func(e index.Entry, plain []byte, err error) error {
				if err != nil {
					return fromSource("source: %w", err)
				}
				c.P.BlobsRead.Add(1)
				c.P.BytesRead.Add(int64(len(plain)))
				nid, _, err := c.dst.SaveBlob(ctx, e.Type, plain)
				if err != nil {
					return fmt.Errorf("destination: %w", err)
				}
				c.setBlob(e.ID, nid)
				return nil
			})
		})
	}
	return g.Wait()
}
