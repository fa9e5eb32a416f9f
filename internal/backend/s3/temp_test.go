package s3

import (
	"context"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/miniotest"
)

// TestCleanTemp: an incomplete multipart upload older than the limit (left
// by a killed writer) is aborted, a recent one (possibly still running)
// and uploads outside the repository's prefix are kept.
func TestCleanTemp(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		ctx := context.Background()
		be := s.backend(t, plainBucket)
		var _ backend.TempCleaner = be
		start := func(key string) string {
			t.Helper()
			id, err := be.core.NewMultipartUpload(ctx, plainBucket, key, minio.PutObjectOptions{})
			if err != nil {
				t.Fatalf("starting a multipart upload of %s: %v", key, err)
			}
			return id
		}
		staleKey, otherKey, freshKey := be.prefix+"/snapshots/stale", "elsewhere/snapshots/stale", be.prefix+"/data/ab/fresh"
		start(staleKey)
		start(otherKey)
		time.Sleep(2500 * time.Millisecond) // S3 dates uploads to the second
		start(freshKey)

		n, err := be.CleanTemp(ctx, 1500*time.Millisecond)
		if err != nil || n != 1 {
			t.Errorf("CleanTemp = %d, %v; want 1, nil", n, err)
		}
		left := make(map[string]bool)
		for u := range be.client.ListIncompleteUploads(ctx, plainBucket, "", true) {
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			left[u.Key] = true
		}
		if left[staleKey] || !left[freshKey] || !left[otherKey] {
			t.Errorf("incomplete uploads left: %v; want %s and %s", left, freshKey, otherKey)
		}
	})
}
