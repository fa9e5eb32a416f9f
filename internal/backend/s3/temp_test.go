package s3

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

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
			out, err := be.client.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: aws.String(plainBucket), Key: &key})
			if err != nil {
				t.Fatalf("starting a multipart upload of %s: %v", key, err)
			}
			return aws.ToString(out.UploadId)
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
		out, err := be.client.ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(plainBucket)})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range out.Uploads {
			left[aws.ToString(u.Key)] = true
		}
		if left[staleKey] || !left[freshKey] || !left[otherKey] {
			t.Errorf("incomplete uploads left: %v; want %s and %s", left, freshKey, otherKey)
		}
	})
}
