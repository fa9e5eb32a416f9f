package miniotest

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
)

// Client returns an S3 client (aws-sdk-go-v2) with root credentials, for
// setting up buckets and for reaching past nestguard to the stored
// objects directly.
func (s *Server) Client(t testing.TB) *s3.Client {
	t.Helper()
	return s.client(credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""))
}

// RoleClient returns an S3 client with the credentials of RoleEnv:
// limited to policy.
func (s *Server) RoleClient(t testing.TB, policy string) *s3.Client {
	t.Helper()
	v := s.roleCreds(t, policy)
	return s.client(credentials.NewStaticCredentialsProvider(*v.AccessKeyId, *v.SecretAccessKey, *v.SessionToken))
}

// apiClient is the HTTP client of the S3 and STS clients: the server's
// CA, no proxy.
func (s *Server) apiClient() *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS13},
	}}
}

func (s *Server) client(creds aws.CredentialsProvider) *s3.Client {
	return s3.New(s3.Options{
		Credentials:  creds,
		Region:       Region,
		BaseEndpoint: aws.String("https://" + s.Endpoint),
		UsePathStyle: true,
		HTTPClient:   s.apiClient(),
		// A MinIO just started may answer 503 "Server not initialized
		// yet" for a moment.
		RetryMaxAttempts: 10,
	})
}

// MakeBucket creates a bucket, with Object Lock enabled (and so
// versioning) when objectLock is set. No default retention is configured:
// nestguard sets retention per object.
func (s *Server) MakeBucket(t testing.TB, name string, objectLock bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := s.Client(t)
	_, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name, ObjectLockEnabledForBucket: aws.Bool(objectLock)})
	if err != nil {
		t.Fatalf("miniotest: creating bucket %q: %v", name, err)
	}
	// A busy MinIO has answered ObjectLockConfigurationNotFoundError for
	// a bucket it had just created with Object Lock: wait until the
	// bucket says it has it, as the code under test will ask.
	for objectLock {
		out, err := cl.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &name})
		if err == nil && out.ObjectLockConfiguration != nil && out.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("miniotest: bucket %q created with Object Lock does not say so: %v", name, err)
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
		"AWS_ACCESS_KEY_ID="+*v.AccessKeyId,
		"AWS_SECRET_ACCESS_KEY="+*v.SecretAccessKey,
		"AWS_SESSION_TOKEN="+*v.SessionToken,
	)
}

func (s *Server) roleCreds(t testing.TB, policy string) *ststypes.Credentials {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := sts.New(sts.Options{
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		Region:       Region,
		BaseEndpoint: aws.String("https://" + s.Endpoint),
		HTTPClient:   s.apiClient(),
	})
	for {
		out, err := c.AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn:         aws.String("arn:aws:iam::000000000000:role/nestguard-test"), // required by the SDK, ignored by MinIO
			RoleSessionName: aws.String("nestguard-test"),
			Policy:          &policy,
			DurationSeconds: aws.Int32(3600),
		})
		if err == nil && out.Credentials != nil {
			return out.Credentials
		}
		// MinIO's IAM starts after its S3 API: until then STS answers
		// 400 "Server not initialized, please try again".
		if err == nil || !strings.Contains(err.Error(), "not initialized") || ctx.Err() != nil {
			t.Fatalf("miniotest: assuming a role with a session policy: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
