package s3

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/backendtest"
	"github.com/nestguard/nestguard/internal/miniotest"
)

// testServer is one S3 server (MinIO or versitygw) shared by the subtests of a test, with a
// plain bucket and an Object Lock bucket; each backend gets its own prefix.
type testServer struct {
	*miniotest.Server
	n atomic.Int64
}

const (
	plainBucket  = "plain"
	lockedBucket = "locked"
)

func startServer(t *testing.T, k miniotest.Kind) *testServer {
	t.Helper()
	s := miniotest.StartKind(t, k)
	s.MakeBucket(t, plainBucket, false)
	s.MakeBucket(t, lockedBucket, true)
	return &testServer{Server: s}
}

func (s *testServer) config(bucket string) Config {
	return Config{
		Endpoint:   s.Endpoint,
		Region:     miniotest.Region,
		Bucket:     bucket,
		Prefix:     fmt.Sprintf("repo-%d", s.n.Add(1)),
		PathStyle:  true,
		Secure:     true,
		CACertFile: s.CACert,
		Creds:      credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	}
}

func (s *testServer) backend(t *testing.T, bucket string) *Backend {
	t.Helper()
	be, err := New(context.Background(), s.config(bucket))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return be
}

func TestConformance(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		for _, bucket := range []string{plainBucket, lockedBucket} {
			t.Run(bucket, func(t *testing.T) {
				backendtest.Run(t, func(t *testing.T) backend.Backend { return s.backend(t, bucket) })
			})
		}
	})
}

// TestStoreTime: the store tells its time (backend.Clock), and on these
// servers, on this host's clock, it is this host's time to the second,
// or two behind: versitygw dates its answers by a clock it reads once a
// second.
func TestStoreTime(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		be := s.backend(t, plainBucket)
		c, ok := backend.As[backend.Clock](be)
		if !ok {
			t.Fatal("an S3 backend is no backend.Clock")
		}
		before := time.Now()
		st, err := c.StoreTime(context.Background())
		after := time.Now()
		if err != nil || st.Before(before.Add(-2*time.Second)) || st.After(after.Add(time.Second)) {
			t.Fatalf("StoreTime = %v, %v; want between %v and %v", st, err, before, after)
		}
	})
}
