package hold

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/s3"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/miniotest"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/retention/locktest"
	"github.com/nestguard/nestguard/internal/snapshot"
)

func packNames(t *testing.T, be backend.Backend) []string {
	t.Helper()
	var out []string
	err := be.List(context.Background(), backend.PackFile, func(fi backend.FileInfo) error {
		out = append(out, fi.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// twoCopies makes a repository on be whose snapshot has every blob in two
// packs, as two backups of the same data running at once leave it: a
// second handle on the repository, opened before the backup wrote
// anything, stores every blob again. It returns the snapshot, every pack,
// and the repository opened afterwards, as the next command opens it.
func twoCopies(t *testing.T, be backend.Backend, lock *repository.ObjectLock) (*repository.Repository, *snapshot.Snapshot, []string) {
	t.Helper()
	r := repotest.New(t, repotest.Backend(be), repotest.ObjectLock(lock))
	other := repotest.Open(t, be)
	sn := backup(t, r, 7, []byte("shared"))
	first := packNames(t, be)
	repotest.StoreAgain(t, r, other)
	all := packNames(t, be)
	if len(all) < 2*len(first) {
		t.Fatalf("%d packs after storing the %d packs' blobs again", len(all), len(first))
	}
	fresh := repotest.Open(t, be)
	fresh.Index().Each(func(e index.Entry) bool {
		if n := len(fresh.Index().Locations(e.ID)); n != 2 {
			t.Fatalf("blob %s has %d locations, want 2", e.ID.Short(), n)
		}
		return true
	})
	return fresh, sn, all
}

// testCopiesKept: retention and legal holds reach every pack holding a
// blob the snapshot needs, not only the one the index lists first: if
// that one is damaged or removed, the other copy is what restores, and it
// must not have expired or lost its hold meanwhile.
func testCopiesKept(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	lock := &repository.ObjectLock{Mode: repository.LockGovernance, MinRetention: time.Hour}
	r, sn, packs := twoCopies(t, be, lock)
	l, _ := r.Locker()
	sn.Time = time.Now().Add(30 * time.Minute) // as if taken later: its packs need more
	want := sn.Time.Add(lock.MinRetention)
	if _, err := retention.Apply(ctx, r, sn); err != nil {
		t.Fatal(err)
	}
	if _, err := Add(ctx, r, sn, "CASE-9", "both copies", Options{}); err != nil {
		t.Fatal(err)
	}
	set, err := retention.Objects(ctx, r, sn)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range packs {
		pid, _ := id.Parse(p)
		if !slices.Contains(set.Packs, pid) {
			t.Errorf("pack %s holds blobs of the snapshot but is not in its set", p[:8])
		}
		st, err := l.Retention(ctx, backend.Handle{Type: backend.PackFile, Name: p})
		if err != nil {
			t.Fatal(err)
		}
		if st.Until.Before(want.Add(-time.Second)) {
			t.Errorf("pack %s retained until %v, want >= %v", p[:8], st.Until, want)
		}
		if !st.LegalHold {
			t.Errorf("pack %s holds blobs of the held snapshot but has no legal hold", p[:8])
		}
	}
}

func TestCopiesKept(t *testing.T) {
	t.Run("locktest", func(t *testing.T) { testCopiesKept(t, locktest.New(true)) })
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		srv := miniotest.StartKind(t, k)
		srv.MakeBucket(t, "worm", true)
		be, err := s3.New(context.Background(), s3.Config{
			Endpoint: srv.Endpoint, Region: miniotest.Region, Bucket: "worm", Prefix: "repo",
			PathStyle: true, Secure: true, CACertFile: srv.CACert,
			Creds: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		})
		if err != nil {
			t.Fatal(err)
		}
		testCopiesKept(t, be)
	})
}
