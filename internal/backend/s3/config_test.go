package s3

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/retry"
	"github.com/nestguard/nestguard/internal/miniotest"
)

func TestNewReportsSetupMistakes(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		ctx := context.Background()

		cfg := s.config("no-such-bucket")
		if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) || !strings.Contains(err.Error(), "create it first") {
			t.Errorf("missing bucket: %v", err)
		}

		// The server's CA not given: say which flag gives it (found by
		// a hostile test: a bare x509 error).
		cfg = s.config(plainBucket)
		cfg.CACertFile = ""
		if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "--ca-cert") {
			t.Errorf("untrusted certificate: %v", err)
		}
		cfg = s.config(plainBucket)
		cfg.Endpoint = "127.0.0.1:1"
		if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "nothing answers at 127.0.0.1:1") {
			t.Errorf("nothing listening: %v", err)
		}

		cfg = s.config(plainBucket)
		cfg.Creds = credentials.NewStaticCredentialsProvider(s.AccessKey, "wrong secret", "")
		_, err := New(ctx, cfg)
		// The refusal names the credentials used (never the secret).
		if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "check the credentials (the credentials given, access key ID ****"+s.AccessKey[len(s.AccessKey)-4:]+")") || retry.IsTransient(err) {
			t.Errorf("wrong secret: %v (transient %v)", err, retry.IsTransient(err))
		}
		if err != nil && strings.Contains(err.Error(), "wrong secret") {
			t.Error("an error message shows the secret key")
		}

		// Without the CA bundle the test server's certificate is unknown: a
		// permanent error, not one to retry.
		cfg = s.config(plainBucket)
		cfg.CACertFile = ""
		start := time.Now()
		_, err = New(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), "certificate") || retry.IsTransient(err) {
			t.Errorf("unknown CA: %v (transient %v)", err, retry.IsTransient(err))
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("unknown CA took %v to report: retried?", d)
		}

		cfg = s.config(plainBucket)
		cfg.CACertFile = filepath.Join(t.TempDir(), "empty.pem")
		os.WriteFile(cfg.CACertFile, []byte("not a certificate"), 0o600)
		if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
			t.Errorf("CA bundle without certificates: %v", err)
		}

		for _, ep := range []string{s.Endpoint + "/bucket", "https://" + s.Endpoint + "/bucket"} {
			cfg = s.config(plainBucket)
			cfg.Endpoint = ep
			if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "host[:port]") && !strings.Contains(err.Error(), "only a scheme, host and port") {
				t.Errorf("endpoint %q: %v", ep, err)
			}
		}
		// A URL with a scheme, as the AWS tools take it.
		cfg = s.config(plainBucket)
		cfg.Endpoint = "https://" + s.Endpoint
		if be, err := New(ctx, cfg); err != nil {
			t.Errorf("endpoint %q: %v", cfg.Endpoint, err)
		} else {
			be.Close()
		}

		cfg = s.config(plainBucket)
		cfg.PartSize = 1 << 20
		if _, err := New(ctx, cfg); err == nil {
			t.Error("1 MiB part size accepted")
		}
	})
}

func TestCredentialChain(t *testing.T) {
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		ctx := context.Background()
		dir := t.TempDir()
		// Keep the chain away from the developer's files and from any
		// metadata service that is not on loopback.
		for k, v := range map[string]string{
			"AWS_ACCESS_KEY_ID": "", "AWS_ACCESS_KEY": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SECRET_KEY": "", "AWS_SESSION_TOKEN": "",
			"AWS_CONFIG_FILE":                    filepath.Join(dir, "no-config"),
			"AWS_SHARED_CREDENTIALS_FILE":        filepath.Join(dir, "no-credentials"),
			"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://" + closedAddr(t) + "/credentials",
			"AWS_PROFILE":                        "",
		} {
			t.Setenv(k, v)
		}
		cfg := s.config(plainBucket)
		cfg.Creds = nil
		if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "no S3 credentials found") {
			t.Errorf("no credentials anywhere: %v", err)
		}

		file := filepath.Join(dir, "credentials")
		os.WriteFile(file, fmt.Appendf(nil, "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[backup]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s.AccessKey, s.SecretKey), 0o600)
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
		t.Setenv("AWS_PROFILE", "backup")
		if _, err := New(ctx, cfg); err != nil {
			t.Errorf("credentials from profile backup of the shared file: %v", err)
		}

		// The environment comes first.
		t.Setenv("AWS_PROFILE", "default")
		t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
		if _, err := New(ctx, cfg); err != nil {
			t.Errorf("credentials from the environment: %v", err)
		}
	})
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestInsecureHTTPOnlyOnLoopback(t *testing.T) {
	ctx := context.Background()
	for _, ep := range []string{"127.0.0.1:9000", "localhost:9000", "[::1]:9000", "127.0.0.5"} {
		if err := checkLoopback(ctx, ep); err != nil {
			t.Errorf("checkLoopback(%q): %v", ep, err)
		}
	}
	for _, ep := range []string{"192.0.2.1:9000", "[2001:db8::1]:443", "10.0.0.1"} {
		err := checkLoopback(ctx, ep)
		if err == nil || !strings.Contains(err.Error(), "is only allowed for a loopback endpoint") {
			t.Errorf("checkLoopback(%q): %v", ep, err)
		}
	}
	_, err := New(ctx, Config{Endpoint: "192.0.2.1:9000", Bucket: "b", Creds: credentials.NewStaticCredentialsProvider("test-id", "test-secret-key", "")})
	if err == nil || !strings.Contains(err.Error(), "--insecure-http") {
		t.Errorf("New with plain HTTP to a non-loopback endpoint: %v", err)
	}
}

// A server that offers at most TLS 1.2 is refused.
func TestTLS13Required(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	_, err := New(context.Background(), Config{
		Endpoint: strings.TrimPrefix(srv.URL, "https://"), Bucket: "bucket", Secure: true, PathStyle: true,
		CACertFile: ca, Region: "us-east-1", Creds: credentials.NewStaticCredentialsProvider("test-id", "test-secret-key", ""),
	})
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.2 server: %v", err)
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, c := range []struct {
		in       string
		insecure bool
		host     string
		secure   bool
	}{
		{"minio.internal:9000", false, "minio.internal:9000", true},
		{"127.0.0.1:9000", true, "127.0.0.1:9000", false},
		{"https://s3.eu-central-1.amazonaws.com", false, "s3.eu-central-1.amazonaws.com", true},
		{"https://minio.internal:9000/", false, "minio.internal:9000", true},
		{"HTTPS://minio.internal:9000", false, "minio.internal:9000", true},
		{"http://127.0.0.1:9000", false, "127.0.0.1:9000", false},
		{"http://localhost:9000", true, "localhost:9000", false},
	} {
		host, secure, err := ParseEndpoint(c.in, c.insecure)
		if err != nil || host != c.host || secure != c.secure {
			t.Errorf("ParseEndpoint(%q, %v) = %q, %v, %v; want %q, %v", c.in, c.insecure, host, secure, err, c.host, c.secure)
		}
	}
	for _, c := range []struct {
		in       string
		insecure bool
		msg      string
	}{
		{"https://minio.internal:9000", true, "give one"},
		{"ftp://minio.internal", false, "unknown scheme"},
		{"https://minio.internal/bucket", false, "only a scheme, host and port"},
		{"https://minio.internal?x=1", false, "only a scheme, host and port"},
		{"https://", false, "no host"},
		{"minio.internal/bucket", false, "host[:port] or a URL"},
		{"https://key:secret@minio.internal", false, "credentials do not belong"},
		{"https://key:secret@", false, "credentials do not belong"},
		{"https://key:se cret@minio.internal", false, `"https://...@minio.internal" is not a URL`},
		{"https://minio.internal?X-Amz-Signature=secret", false, `"https://minio.internal?..."`},
		{"https://minio.internal/p#secret", false, `"https://minio.internal/p#..."`},
		{"minio.internal?secret", false, `"minio.internal?..."`},
		{"key:secret@minio.internal", false, `"...@minio.internal"`},
	} {
		_, _, err := ParseEndpoint(c.in, c.insecure)
		if err == nil || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseEndpoint(%q, %v): %v; want an error saying %q, without the secret", c.in, c.insecure, err, c.msg)
		}
		// A mistake in how the store is named: exit 2 (hostile-s3 L4).
		if le := (*backend.LocationError)(nil); !errors.As(err, &le) {
			t.Errorf("ParseEndpoint(%q, %v): %v is not a backend.LocationError", c.in, c.insecure, err)
		}
	}
}

// TestEndpointURL connects through endpoints given as URLs: http:// speaks
// plain HTTP to a loopback server without --insecure-http, and stays
// refused for any other address.
func TestEndpointURL(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Query().Has("versioning") {
			w.Write([]byte(`<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></VersioningConfiguration>`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	creds := credentials.NewStaticCredentialsProvider("test-id", "test-secret-key", "")
	// Secure as location sets it without --insecure-http: the URL decides.
	be, err := New(ctx, Config{Endpoint: srv.URL, Bucket: "bkt", Secure: true, PathStyle: true, Region: "us-east-1", Creds: creds})
	if err != nil {
		t.Fatalf("New with endpoint %s: %v", srv.URL, err)
	}
	be.Close()
	if requests.Load() == 0 {
		t.Error("the server saw no request")
	}
	_, err = New(ctx, Config{Endpoint: "http://192.0.2.1:9000", Bucket: "b", Secure: true, Creds: creds})
	if err == nil || !strings.Contains(err.Error(), "only allowed for a loopback endpoint") {
		t.Errorf("New with http:// to a non-loopback endpoint: %v", err)
	}
}

// TestRefusalNamesClockSkew: a store that refuses the bucket's HEAD (403,
// no body, so no error code) while its clock is far from this machine's
// is answering RequestTimeTooSkewed: the message says the clocks differ
// and by how much, not only "check the credentials and the bucket
// policy" (hostile-s3 L2). With the clocks agreeing it says the latter.
func TestRefusalNamesClockSkew(t *testing.T) {
	var offset atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(time.Duration(offset.Load())).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	ctx := context.Background()
	creds := credentials.NewStaticCredentialsProvider("test-id", "test-secret-key", "")
	cfg := Config{Endpoint: srv.URL, Bucket: "bkt", Secure: true, PathStyle: true, Region: "us-east-1", Creds: creds}
	for _, c := range []struct {
		offset time.Duration
		want   string
	}{
		{-20 * time.Minute, "this machine's clock is about 20m0s ahead of the store's"},
		{time.Hour, "this machine's clock is about 1h0m0s behind the store's"},
		{0, "check the credentials"},
	} {
		offset.Store(int64(c.offset))
		_, err := New(ctx, cfg)
		if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("refused by a store whose clock is %v off: %v; want it to say %q", c.offset, err, c.want)
		}
		if c.offset != 0 && (!strings.Contains(err.Error(), "RequestTimeTooSkewed") || !strings.Contains(err.Error(), "NTP")) {
			t.Errorf("clock skew: %v does not name RequestTimeTooSkewed and what to do", err)
		}
	}
	b := &Backend{bucket: "bkt", location: "s3://bkt/p"}
	if err := b.wrap(apiError(403, "RequestTimeTooSkewed"), "loading x"); !strings.Contains(err.Error(), "the store says this machine's clock is too far from its own") {
		t.Errorf("403 RequestTimeTooSkewed without a Date: %v", err)
	}
}
