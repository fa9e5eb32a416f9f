package restorer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/tree"
)

// errOutage is what a read fails with when the storage does not answer
// (package retry's give-up on a throttling or down store).
var errOutage = fmt.Errorf("giving up after 6 attempts over 16s: 503 SlowDown: %w", backend.ErrUnavailable)

// outageRepo is a repository whose storage does not answer for the tree
// bad, nor, once packsAfter pack reads were answered (never, when
// negative), for any pack read.
type outageRepo struct {
	*repository.Repository
	bad        id.ID
	packsAfter int64
	packs      *atomic.Int64
}

func (o outageRepo) LoadBlob(ctx context.Context, bid id.ID, dst []byte) ([]byte, error) {
	if bid == o.bad {
		return nil, fmt.Errorf("blob %s: %w", bid.Short(), errOutage)
	}
	return o.Repository.LoadBlob(ctx, bid, dst)
}

func (o outageRepo) LoadPackBlobsPlaced(ctx context.Context, pid id.ID, blobs []index.Entry, place func(index.Entry) int, fn func(index.Entry, []byte, error) error) error {
	if o.packsAfter >= 0 && o.packs.Add(1) > o.packsAfter {
		for _, e := range blobs {
			if err := fn(e, nil, fmt.Errorf("pack %s: %w", pid.Short(), errOutage)); err != nil {
				return err
			}
		}
		return nil
	}
	return o.Repository.LoadPackBlobsPlaced(ctx, pid, blobs, place, fn)
}

// TestOutageStopsRestore: a storage that does not answer (hostile-s3 M2)
// stops a restore with a StorageError, not a partial restore (which exits
// 3, "some files were unreadable or damaged"): at the root tree, at a
// subtree, and at the files' data. No file is left half-written, and
// none is reported damaged.
func TestOutageStopsRestore(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "f"), []byte("in sub"), 0o644)
	for i := range 20 {
		b := make([]byte, 200_000)
		for j := range b {
			b[j] = byte(i*7 + j*13)
		}
		os.WriteFile(filepath.Join(src, fmt.Sprintf("g%02d", i)), b, 0o644)
	}
	sn := backupTree(t, repo, src)
	sub, err := tree.Lookup(ctx, repo, sn.Tree, filepath.ToSlash(filepath.Join(src, "sub")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		bad        id.ID
		packsAfter int64
		want       string
	}{
		{"root tree", sn.Tree, -1, "reading the directory / of the snapshot"},
		{"subtree", *sub.Subtree, -1, "reading the directory " + filepath.ToSlash(filepath.Join(src, "sub")) + " of the snapshot"},
		{"data", id.ID{}, 2, "503 SlowDown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "t")
			r := New(outageRepo{repo, tc.bad, tc.packsAfter, new(atomic.Int64)}, Options{Target: dst, Workers: 2})
			err := r.Restore(ctx, sn.Tree)
			var se *StorageError
			if !errors.As(err, &se) || !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "nothing is known to be damaged") {
				t.Fatalf("restore from a storage that does not answer: %v, want a StorageError saying %q", err, tc.want)
			}
			for _, e := range r.Errors() {
				if !strings.Contains(e.Err, "context canceled") {
					t.Errorf("file reported unrestorable for an outage: %s: %s", e.Path, e.Err)
				}
			}
			// What is in the target is whole.
			filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(filepath.Join(dst, src), p)
				want, _ := os.ReadFile(filepath.Join(src, rel))
				if got, _ := os.ReadFile(p); string(got) != string(want) {
					t.Errorf("%s left in the target, not whole: %d of %d bytes", rel, len(got), len(want))
				}
				return nil
			})
		})
	}
}
