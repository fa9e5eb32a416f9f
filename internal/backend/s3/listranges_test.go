package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/miniotest"
)

// entry is a listed key and one of its versions.
type entry struct{ key, version string }

// fakePager pages through sorted entries after a key, size a page, as
// S3 does (a key's versions may be cut between two pages).
type fakePager struct {
	entries []entry
	pos     int
	size    int
	fail    string // a key whose page fails
}

func (p *fakePager) more() bool { return p.pos < len(p.entries) }

func (p *fakePager) next(context.Context) ([]entry, error) {
	end := min(p.pos+p.size, len(p.entries))
	page := p.entries[p.pos:end]
	p.pos = end
	for _, e := range page {
		if e.key == p.fail {
			return nil, errors.New("listing failed")
		}
	}
	return page, nil
}

func fakeListing(entries []entry, size int, fail string) (pager[entry], func(string) pager[entry]) {
	open := func(after string) pager[entry] {
		i := sort.Search(len(entries), func(i int) bool { return entries[i].key > after })
		return &fakePager{entries: entries, pos: i, size: size, fail: fail}
	}
	return &fakePager{entries: entries, size: size, fail: fail}, open
}

// TestListRanges: every entry once, in order, whatever the keys (hex
// names, data/'s subdirectories, foreign names), the page size and a
// key's versions cut between pages; a listing's error and emit's stop it.
func TestListRanges(t *testing.T) {
	const prefix = "p/snapshots/"
	rng := rand.New(rand.NewPCG(1, 2))
	var entries []entry
	for i := range 3000 {
		k := fmt.Sprintf("%064x", rng.Uint64())
		switch i % 500 {
		case 1:
			k = "~foreign"
		case 2:
			k = "0~" + k
		case 3:
			k = k[:2] + "/" + k
		case 4:
			k = "\u00e9t\u00e9"
		}
		for v := range 1 + i%3 {
			entries = append(entries, entry{prefix + k, fmt.Sprint(v)})
		}
	}
	entries = append(entries, entry{prefix + "0~", "0"}, entry{prefix + "f~", "0"}) // keys equal to bounds
	slices.SortStableFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	key := func(e entry) string { return e.key }
	for _, size := range []int{1, 7, 1000, 5000} {
		first, open := fakeListing(entries, size, "")
		var got []entry
		if err := listRanges(context.Background(), prefix, first, open, key, func(e entry) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, entries) {
			t.Fatalf("pages of %d: listed %d entries, want the %d in order", size, len(got), len(entries))
		}
	}
	first, open := fakeListing(entries, 10, entries[len(entries)/2].key)
	if err := listRanges(context.Background(), prefix, first, open, key, func(entry) error { return nil }); err == nil {
		t.Error("a range's listing error was not returned")
	}
	first, open = fakeListing(entries, 10, "")
	stop := errors.New("stop")
	n := 0
	err := listRanges(context.Background(), prefix, first, open, key, func(entry) error {
		if n++; n == 2000 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2000 {
		t.Errorf("emit's error: %v after %d entries", err, n)
	}
}

// TestListManyPages: listings of more than one page (read in key ranges
// at once) list every object once, on both servers, plain and versioned
// (Object Lock) buckets, for names in data/'s subdirectories and not.
func TestListManyPages(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		for _, bucket := range []string{plainBucket, lockedBucket} {
			t.Run(bucket, func(t *testing.T) {
				be := s.backend(t, bucket)
				ctx := context.Background()
				rng := rand.New(rand.NewPCG(3, 4))
				want := map[backend.FileType][]string{}
				for _, ft := range []backend.FileType{backend.SnapshotFile, backend.PackFile} {
					for range 1050 { // just over a page of 1,000
						want[ft] = append(want[ft], fmt.Sprintf("%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()))
					}
				}
				g, gctx := errgroup.WithContext(ctx)
				g.SetLimit(32)
				for ft, names := range want {
					for _, n := range names {
						g.Go(func() error {
							return be.Save(gctx, backend.Handle{Type: ft, Name: n}, bytes.NewReader([]byte(n)), int64(len(n)))
						})
					}
				}
				if err := g.Wait(); err != nil {
					t.Fatal(err)
				}
				for ft, names := range want {
					slices.Sort(names)
					var got []string
					if err := be.List(ctx, ft, func(fi backend.FileInfo) error { got = append(got, fi.Name); return nil }); err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, names) {
						t.Errorf("%s: listed %d objects, want the %d saved, in order", ft, len(got), len(names))
					}
				}
			})
		}
	})
}
