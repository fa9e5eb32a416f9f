package miniotest

import (
	"context"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nestguard/nestguard/internal/backend/s3/compat"
)

// Client returns a minio-go client with root credentials, for setting up
// buckets and for reaching past nestguard to the stored objects directly.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	tr, err := minio.DefaultTransport(true)
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	tr.TLSClientConfig.RootCAs = s.pool
	tr.Proxy = nil
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       true,
		Transport:    compat.Transport(tr), // versitygw's retention answers
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatalf("miniotest: client for %s: %v", s.Endpoint, err)
	}
	return c
}

// MakeBucket creates a bucket, with Object Lock enabled (and so
// versioning) when objectLock is set. No default retention is configured:
// nestguard sets retention per object.
func (s *Server) MakeBucket(t testing.TB, name string, objectLock bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region, ObjectLocking: objectLock})
	if err != nil {
		t.Fatalf("miniotest: creating bucket %q: %v", name, err)
	}
}

// Env returns the environment for running nestguard against this server:
// credentials, region, endpoint, path-style addressing and the CA bundle.
// Append it to os.Environ(): later entries win.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_REGION=" + Region,
		"NESTGUARD_S3_ENDPOINT=" + s.Endpoint,
		"NESTGUARD_S3_PATH_STYLE=true",
		"NESTGUARD_CA_CERT=" + s.CACert,
	}
}
