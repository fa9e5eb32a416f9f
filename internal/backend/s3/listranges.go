package s3

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// A listing of S3 is a chain of pages of 1,000 keys, each asked for with
// the last key of the one before: 100,000 packs or 20,000 snapshots are
// 100 or 20 round trips one after the other. listRanges reads the first
// page as before (a small listing costs one request) and, when there are
// more, the rest in up to 16 key ranges at once, cut at the hexadecimal
// digit after the type's prefix (every name of a hash-named type starts
// with one), and passes the entries on in key order, as one chain would.

// pager is one range's chain of pages (an SDK paginator).
type pager[T any] interface {
	more() bool
	next(ctx context.Context) ([]T, error)
}

// rangeBuffer is how many pages a range reads ahead of the one being
// passed on: with 16 ranges, at most 256 pages (256,000 entries) held.
const rangeBuffer = 16

// rangeBounds returns the upper bounds of the key ranges a listing of
// prefix is cut into, above after (the last key read): prefix, a hex
// digit, then "~", which sorts above every hex digit and "/", so that
// each range holds the names (and data/'s subdirectories) that start
// with one digit. The ranges cover every key once whatever its form: a
// key is in the range of the first bound at or above it.
func rangeBounds(prefix, after string) []string {
	var out []string
	for _, c := range "0123456789abcde" {
		if b := prefix + string(c) + "~"; b > after {
			out = append(out, b)
		}
	}
	return out
}

// listRanges lists every entry under prefix through first (a chain from
// the start) and open (a chain starting after a key), passing each to
// emit in key order; key returns an entry's key. A listing error or
// emit's stops it; emit is called from one goroutine at a time.
func listRanges[T any](ctx context.Context, prefix string, first pager[T], open func(after string) pager[T], key func(T) string, emit func(T) error) error {
	each := func(page []T) error {
		for _, e := range page {
			if err := emit(e); err != nil {
				return err
			}
		}
		return nil
	}
	page, err := first.next(ctx)
	if err != nil {
		return err
	}
	if err := each(page); err != nil {
		return err
	}
	var bounds []string
	if first.more() && len(page) > 0 {
		bounds = rangeBounds(prefix, key(page[len(page)-1]))
	}
	if len(bounds) == 0 {
		return drain(ctx, first, key, "", each)
	}
	g, gctx := errgroup.WithContext(ctx)
	// Range 0 goes on with the first chain up to the first bound; range
	// i starts after bound i-1 and ends at bound i (the last at the end).
	pages := make([]chan []T, len(bounds)+1)
	for i := range pages {
		pages[i] = make(chan []T, rangeBuffer)
		p, until := first, bounds[0]
		if i > 0 {
			p, until = open(bounds[i-1]), ""
			if i < len(bounds) {
				until = bounds[i]
			}
		}
		g.Go(func() error {
			defer close(pages[i])
			return drain(gctx, p, key, until, func(page []T) error {
				select {
				case pages[i] <- page:
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			})
		})
	}
	g.Go(func() error {
		for _, ch := range pages {
			for page := range ch {
				if err := each(page); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return g.Wait()
}

// drain reads p's pages to the end, or up to and including key until
// ("": no end), passing each page's entries in range to sink.
func drain[T any](ctx context.Context, p pager[T], key func(T) string, until string, sink func([]T) error) error {
	for p.more() {
		page, err := p.next(ctx)
		if err != nil {
			return err
		}
		end := len(page)
		if until != "" {
			for end > 0 && key(page[end-1]) > until {
				end--
			}
		}
		if end > 0 {
			if err := sink(page[:end]); err != nil {
				return err
			}
		}
		if end < len(page) {
			return nil
		}
	}
	return nil
}
