package miniotest

import (
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Client returns a minio-go client with root credentials, for setting up
// buckets and for reaching past nestguard to the stored objects directly.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	return s.client(t, credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""))
}

// RoleClient returns a minio-go client with the credentials of RoleEnv:
// limited to policy.
func (s *Server) RoleClient(t testing.TB, policy string) *minio.Client {
	t.Helper()
	v := s.roleCreds(t, policy)
	return s.client(t, credentials.NewStaticV4(v.AccessKeyID, v.SecretAccessKey, v.SessionToken))
}

func (s *Server) client(t testing.TB, creds *credentials.Credentials) *minio.Client {
	t.Helper()
	tr, err := minio.DefaultTransport(true)
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	tr.TLSClientConfig.RootCAs = s.pool
	tr.Proxy = nil
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       true,
		Transport:    compatTransport(tr), // versitygw's retention answers
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
	cl := s.Client(t)
	err := cl.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region, ObjectLocking: objectLock})
	if err != nil {
		t.Fatalf("miniotest: creating bucket %q: %v", name, err)
	}
	// A busy MinIO has answered ObjectLockConfigurationNotFoundError for
	// a bucket it had just created with Object Lock: wait until the
	// bucket says it has it, as the code under test will ask.
	for objectLock {
		status, _, _, _, err := cl.GetObjectLockConfig(ctx, name)
		if err == nil && status == "Enabled" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("miniotest: bucket %q created with Object Lock does not say so: %q, %v", name, status, err)
		case <-time.After(50 * time.Millisecond):
		}
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

// RoleEnv returns Env with temporary credentials limited to policy (an IAM
// policy document), for running nestguard as a user with exactly those
// permissions. They come from STS AssumeRole with policy as the session
// policy: MinIO restricts such credentials to the session policy even
// though the root user asked for them.
func (s *Server) RoleEnv(t testing.TB, policy string) []string {
	t.Helper()
	v := s.roleCreds(t, policy)
	return append(s.Env(),
		"AWS_ACCESS_KEY_ID="+v.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+v.SecretAccessKey,
		"AWS_SESSION_TOKEN="+v.SessionToken,
	)
}

func (s *Server) roleCreds(t testing.TB, policy string) credentials.Value {
	t.Helper()
	creds := &credentials.STSAssumeRole{
		Client:      &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS13}}},
		STSEndpoint: "https://" + s.Endpoint,
		Options: credentials.STSAssumeRoleOptions{
			AccessKey: s.AccessKey, SecretKey: s.SecretKey, Policy: policy,
			Location: Region, DurationSeconds: 3600,
		},
	}
	v, err := credentials.New(creds).GetWithContext(nil)
	if err != nil {
		t.Fatalf("miniotest: assuming a role with a session policy: %v", err)
	}
	return v
}
