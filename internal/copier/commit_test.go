package copier

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/retention/locktest"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// TestCopyCommits: every copy is saved through the commit step: into a
// destination with an Object Lock policy each gets its retention (here
// retention.Apply, as nestguard's commands set it), the hook sees each,
// and the counts of what each copy stored are the commit step's. When the
// retention of a copy fails, the copy is saved and reported, and the run
// stops with a *commit.RetentionError.
func TestCopyCommits(t *testing.T) {
	ctx := context.Background()
	src := repotest.New(t)
	dir := t.TempDir()
	writeFiles(t, dir, 1, 6, 150_000)
	s1 := backup(t, src, dir)
	pg := postgresSnapshot(t, src, s1)

	be := locktest.New(true)
	policy := &repository.ObjectLock{Mode: repository.LockCompliance, MinRetention: time.Hour}
	dst := repotest.New(t, repotest.Backend(be), repotest.ObjectLock(policy))
	var retained, hooked []string
	failFor := ""
	o := Options{Commit: commit.Options{
		Retain: func(ctx context.Context, repo *repository.Repository, sn *snapshot.Snapshot) error {
			if sn.CopiedFrom == failFor {
				return errors.New("retention refused")
			}
			retained = append(retained, sn.CopiedFrom)
			_, err := retention.Apply(ctx, repo, sn)
			return err
		},
		AfterCommit: func(_ context.Context, c commit.Committed) error {
			hooked = append(hooked, c.Snapshot.CopiedFrom)
			return nil
		},
	}}
	c, err := New(src, dst, o)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Run(ctx, []string{s1.ID.String()}, false, nil)
	if err != nil || len(res.Copied) != 1 {
		t.Fatalf("copy: %+v, %v", res, err)
	}
	origin1 := c.origin(s1)
	if len(retained) != 1 || retained[0] != origin1 || len(hooked) != 1 || hooked[0] != origin1 {
		t.Errorf("retention applied to %q, hook saw %q; want the copy of %s", retained, hooked, s1.ID.Short())
	}
	cp := res.Copied[0]
	if cp.BlobsNew == 0 || cp.BytesStored == 0 || cp.BlobsNew != res.BlobsNew || cp.BytesStored != res.BytesStored {
		t.Errorf("copy stored %d blobs (%d bytes), the run %d (%d)", cp.BlobsNew, cp.BytesStored, res.BlobsNew, res.BytesStored)
	}
	// The copy's snapshot object is retained as long as a backup's would be.
	ret, err := be.Retention(ctx, backend.Handle{Type: backend.SnapshotFile, Name: cp.Destination})
	if err != nil || ret.Until.Before(s1.Time.Add(policy.MinRetention)) {
		t.Errorf("copy %s retained until %v (%v), want at least %v", cp.Destination[:8], ret.Until, err, s1.Time.Add(policy.MinRetention))
	}

	// The PostgreSQL snapshot's retention fails: saved, reported, hooked.
	failFor = c.origin(pg)
	res, err = c.Run(ctx, nil, true, nil)
	var re *commit.RetentionError
	if !errors.As(err, &re) || re.Snapshot.CopiedFrom != failFor {
		t.Fatalf("copy with failing retention: %v", err)
	}
	if res == nil || len(res.Copied) != 1 || res.Copied[0].Source != pg.ID.String() || len(hooked) != 2 || hooked[1] != failFor {
		t.Errorf("copy with failing retention: result %+v, hook saw %q", res, hooked)
	}
	if _, err := snapshot.Load(ctx, dst, re.Snapshot.ID); err != nil {
		t.Errorf("copy whose retention failed is not saved: %v", err)
	}
}
