// Package s3 stores a repository in an S3-compatible object store (AWS S3,
// MinIO, and others) through aws-sdk-go-v2.
//
// Objects are stored under a prefix as <prefix>/config,
// <prefix>/<type>/<name>, and packs as <prefix>/data/<2 hex>/<name>.
// Every upload carries a CRC32C checksum that the server verifies and
// echoes (an upload acknowledged with another checksum, or not there
// when the store echoes none, is an error), and objects larger than twice
// the part size (16 MiB) go up as multipart uploads. A request that waits
// for the store without progress for Config.IdleTimeout fails as
// transient.
// Uploads are conditional (If-None-Match: *), so an existing object is
// never replaced: Save of an existing name fails with fs.ErrExist.
//
// The backend implements backend.Locker for buckets with Object Lock, and
// also
//
//	type RetentionDefaulter interface {
//		SetDefaultRetention(mode backend.RetentionMode, d time.Duration)
//	}
//
// which the repository calls (through a type assertion) to give every
// object saved afterwards a retention of mode until now+d.
//
// Transient failures are retried by the SDK for a few quick rounds; wrap
// the backend with package retry for bounded, logged retries with backoff.
// Errors from this package say whether they are transient through a
// Transient method, which package retry honours.
package s3

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nestguard/nestguard/internal/backend"
)

// DefaultEndpoint is AWS S3's global endpoint.
const DefaultEndpoint = "s3.amazonaws.com"

// DefaultPartSize is the size of multipart upload parts. Objects up to
// twice this size are uploaded in one request, so every pack (16 MiB and a
// little more) goes up in one PUT.
const DefaultPartSize = 16 << 20

// S3 limits parts to between 5 MiB (except the last) and 5 GiB.
const (
	minPartSize = 5 << 20
	maxPartSize = 5 << 30
)

// RetentionDefaulter is implemented by Backend (and by the retry wrapper
// around it): every object saved after SetDefaultRetention gets a
// retention of mode until now+d.
type RetentionDefaulter interface {
	SetDefaultRetention(mode backend.RetentionMode, d time.Duration)
}

// Config says where the repository is and how to reach it.
type Config struct {
	Endpoint   string // host[:port], or a URL (see ParseEndpoint); default DefaultEndpoint
	Region     string // empty: the bucket's, as the store says, else us-east-1
	Bucket     string
	Prefix     string // key prefix of the repository, without surrounding slashes
	PathStyle  bool   // http://host/bucket/key rather than http://bucket.host/key
	Secure     bool   // HTTPS (TLS 1.3); false is refused unless the endpoint is loopback. An endpoint URL's scheme decides instead
	CACertFile string // PEM bundle of the CAs to trust instead of the system's

	// Creds are the credentials; nil means the usual chain: the AWS
	// environment variables, then profile AWS_PROFILE of the shared files
	// (its keys, credential_process, or a role it assumes at STS) and the
	// rest of the chain defaultChain builds from the SDK's providers (web
	// identity, a container or instance role). SSO profiles are refused
	// with what to do instead. The STS endpoint is reached with CACertFile
	// too.
	Creds aws.CredentialsProvider
	// Profile, when set, is the one source of credentials: that profile
	// of the shared files (its keys, credential_process, or a role it
	// assumes), as the AWS CLI takes --profile. The AWS variables and
	// AWS_PROFILE are then not read, and a profile that does not exist,
	// has one key of its pair, or configures no credentials is an error
	// (see defaultChain). ProfileOrigin says where it was given (a flag
	// such as "--from-s3-profile"), for messages.
	Profile, ProfileOrigin string
	// LookupEnv is where the chain reads the AWS variables (HOME
	// included); nil means the process's environment (os.LookupEnv).
	LookupEnv func(string) (string, bool)

	PartSize int64 // default DefaultPartSize
	// IdleTimeout fails a request that waits this long for the store
	// without progress (see idleTransport); default DefaultIdleTimeout.
	IdleTimeout time.Duration
	Logger      *slog.Logger // default: discarded
}

// Backend is an S3 bucket prefix holding a repository.
type Backend struct {
	client   *awss3.Client
	bucket   string
	prefix   string
	location string
	identity string // what the credentials are, for messages (see identity)
	partSize int64
	log      *slog.Logger

	versioned bool // read pinned versions: see versions.go

	mu        sync.Mutex
	versions  map[string]string     // key -> version to read, on versioned buckets
	retMode   backend.RetentionMode // default retention of new objects, if set
	retPeriod time.Duration
	lockKnown bool // lockOn is known
	lockOn    bool
}

var (
	_ backend.Backend    = (*Backend)(nil)
	_ backend.Locker     = (*Backend)(nil)
	_ RetentionDefaulter = (*Backend)(nil)
)

// New connects to the store and checks that the bucket exists and the
// credentials may use it. It creates nothing.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("S3: no bucket given: use s3://bucket/prefix")
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if strings.Contains(cfg.Endpoint, "://") {
		ep, secure, err := ParseEndpoint(cfg.Endpoint, !cfg.Secure)
		if err != nil {
			return nil, err
		}
		cfg.Endpoint, cfg.Secure = ep, secure
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < minPartSize || cfg.PartSize > maxPartSize {
		return nil, fmt.Errorf("S3: part size %d is outside what S3 allows (5 MiB to 5 GiB)", cfg.PartSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	b := &Backend{
		bucket:   cfg.Bucket,
		prefix:   prefix,
		location: "s3://" + path.Join(cfg.Bucket, prefix),
		partSize: cfg.PartSize,
		log:      cfg.Logger,
		versions: make(map[string]string),
	}
	client, who, err := newClient(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.location, err)
	}
	b.client, b.identity = client, who
	if err := b.checkBucket(ctx, cfg.Endpoint, cfg.Region); err != nil {
		return nil, err
	}
	if err := b.checkVersioning(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// checkBucket turns the common set-up mistakes into clear messages now,
// rather than odd ones on the first object. With no region given,
// requests are then signed for the bucket's region, as the store names
// it; a region given that is not the bucket's is an error naming both.
func (b *Backend) checkBucket(ctx context.Context, endpoint, given string) error {
	out, err := b.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &b.bucket})
	region := bucketRegion(out, err)
	switch {
	case given == "" && region != "" && region != b.client.Options().Region:
		b.client = awss3.New(b.client.Options(), func(o *awss3.Options) { o.Region = region })
		_, err = b.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &b.bucket})
	case given != "" && err != nil && region != "" && region != given:
		// A HEAD answer has no body: without this, a bare "400 Bad Request".
		return fmt.Errorf("%s: bucket %q is in region %q, not %q: give its region (--s3-region, AWS_REGION), or none to have it detected", b.location, b.bucket, region, given)
	}
	if statusOf(err) == http.StatusNotFound {
		return fmt.Errorf("%s: bucket %q does not exist at %s: create it first (with Object Lock enabled for write-once retention); nestguard does not create buckets", b.location, b.bucket, endpoint)
	}
	cf := certFailure(err)
	_, untrusted := cf.(x509.UnknownAuthorityError)
	switch {
	case untrusted:
		// Found by a hostile test: a bare x509 error, after "3 attempts".
		return fmt.Errorf("%s: the certificate of %s is signed by a CA this machine does not trust (%v): give that CA with --ca-cert (a PEM bundle), or check the endpoint", b.location, endpoint, cf)
	case cf != nil:
		return fmt.Errorf("%s: the certificate of %s is not valid for it: %w; check the endpoint (--s3-endpoint) and the server's certificate", b.location, endpoint, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: nothing answers at %s (connection refused): check the endpoint (--s3-endpoint) and that the store is running", b.location, endpoint)
	}
	if err != nil {
		return b.wrap(err, "checking bucket %q at %s", b.bucket, endpoint)
	}
	return nil
}

// bucketRegion returns the region a HeadBucket answer (or its error: S3
// names the region also when it refuses a request signed for another)
// names, "" if none.
func bucketRegion(out *awss3.HeadBucketOutput, err error) string {
	if err == nil {
		return aws.ToString(out.BucketRegion)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.Header.Get("X-Amz-Bucket-Region")
	}
	return ""
}

// Location implements backend.Backend: s3://bucket/prefix, never
// credentials.
func (b *Backend) Location() string { return b.location }

// Concurrency implements backend.Concurrency: each request waits on the
// network, so more are kept in flight than on a disk.
func (b *Backend) Concurrency() (writes, reads int) { return 6, 8 }

// Close implements backend.Backend.
func (b *Backend) Close() error { return nil }

// key returns the object key of h.
func (b *Backend) key(h backend.Handle) (string, error) {
	if h.Type == backend.ConfigFile {
		return path.Join(b.prefix, string(backend.ConfigFile)), nil
	}
	if !validName(h.Name) || !validName(string(h.Type)) {
		return "", fmt.Errorf("invalid object handle %q: type and name must be non-empty and contain no '/'", h.String())
	}
	if h.Type == backend.PackFile {
		if len(h.Name) < 2 {
			return "", fmt.Errorf("invalid pack name %q: shorter than 2 characters", h.Name)
		}
		return path.Join(b.prefix, string(h.Type), h.Name[:2], h.Name), nil
	}
	return path.Join(b.prefix, string(h.Type), h.Name), nil
}

func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// typePrefix is the key prefix that List of t scans.
func (b *Backend) typePrefix(t backend.FileType) string {
	if t == backend.ConfigFile {
		return path.Join(b.prefix, string(t))
	}
	return path.Join(b.prefix, string(t)) + "/"
}

// StoreTime implements backend.Clock: the Date of the answer to a HEAD of
// the bucket (a permission every role has, with s3:ListBucket).
func (b *Backend) StoreTime(ctx context.Context) (time.Time, error) {
	out, err := b.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &b.bucket})
	if err != nil {
		return time.Time{}, b.wrap(err, "reading the storage's time (a HEAD of bucket %q)", b.bucket)
	}
	t, _ := awsmiddleware.GetServerTime(out.ResultMetadata)
	return t, nil
}
