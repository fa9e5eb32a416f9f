package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nestguard/nestguard/internal/miniotest"
)

// TestCopySummaryAfterFailure: a copy whose destination refuses packs
// after the first one fails, and its summary counts what arrived, not
// what was queued for upload (it printed "stored 160 MiB new" when 48 MB
// had arrived).
func TestCopySummaryAfterFailure(t *testing.T) {
	t.Parallel()
	srv, cl := s3Env(t, miniotest.MinIO, map[string]bool{"dst": false})
	var packs atomic.Int64
	proxy := faultProxy(t, srv, func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/data/") && packs.Add(1) > 1
	})
	from := newEnv(t)
	from.must("init")
	src := filepath.Join(from.dir, "src")
	// 60 MiB that does not compress: four 16 MiB packs.
	for i := range 6 {
		b := randomBytes(10<<20, 81, uint64(i))
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	from.must("backup", src)

	to := newEnv(t)
	to.repo = "s3://dst/repo"
	to.extraEnv = append(to.extraEnv, "NESTGUARD_S3_ENDPOINT="+proxy, "NESTGUARD_FROM_PASSWORD="+from.pass)
	to.must("init")
	r := to.run("copy", "--from", from.repo, "latest", "--json")
	if r.code != 1 {
		t.Fatalf("copy into a store that refuses packs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var res struct {
		Copied      []any `json:"copied"`
		BlobsNew    int64 `json:"blobs_new"`
		BytesStored int64 `json:"bytes_stored"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("copy --json after a failure: %v\n%s", err, r.stdout)
	}
	var arrived int64
	for _, v := range s3Objects(t, cl, "dst", "repo/data/") {
		arrived += v
	}
	// A pack still uploading when the copy gave up may or may not have
	// arrived; the summary must match the store either way (packs hold a
	// small header beside the blobs counted).
	if len(res.Copied) != 0 || res.BytesStored > arrived || res.BytesStored < arrived*9/10 {
		t.Errorf("copy summary says %d bytes stored (%d blobs, %d copied); %d bytes of packs arrived", res.BytesStored, res.BlobsNew, len(res.Copied), arrived)
	}
}

// s3Objects returns the size of every object under prefix.
func s3Objects(t *testing.T, cl *s3.Client, bucket, prefix string) map[string]int64 {
	t.Helper()
	out := make(map[string]int64)
	pages := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatalf("listing %s/%s: %v", bucket, prefix, err)
		}
		for _, obj := range page.Contents {
			out[aws.ToString(obj.Key)] = aws.ToInt64(obj.Size)
		}
	}
	return out
}

// A continuous copy stopped by SIGTERM exits 143 as documented, as after
// a failed round (it exited 0 either way, so that a copy loop whose last
// round failed looked like a success; found by a hostile test).
func TestCopyContinuousStoppedBySignal(t *testing.T) {
	t.Parallel()
	from := newEnv(t)
	from.must("init")
	src := filepath.Join(from.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o600)
	from.must("backup", src)
	to := newEnv(t)
	to.must("init")
	to.extraEnv = append(to.extraEnv, "NESTGUARD_FROM_PASSWORD="+from.pass)
	c := to.cmd("copy", "--from-repo", from.repo, "--all", "--continuous", "--interval", "100ms")
	var se strings.Builder
	c.Stderr = &se
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); len(to.snapshotIDs()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.Process.Kill()
			t.Fatalf("no copy within a minute:\n%s", se.String())
		}
	}
	c.Process.Signal(syscall.SIGTERM)
	c.Wait()
	if code := c.ProcessState.ExitCode(); code != 143 {
		t.Errorf("copy --continuous stopped by SIGTERM: exit %d, want 143\n%s", code, se.String())
	}
}
