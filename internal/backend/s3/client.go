package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nestguard/nestguard/internal/backend"
)

// ParseEndpoint reads an S3 endpoint given as host[:port] or, as the AWS
// tools take it (--endpoint-url, AWS_ENDPOINT_URL), as a URL:
// https://host[:port] or http://host[:port], with no path beyond "/".
// It returns host[:port] and whether to use HTTPS: a URL's scheme decides,
// and host[:port] alone means HTTPS unless insecure (--insecure-http) is
// set. An https:// URL with insecure set is refused as contradictory.
// Plain HTTP is still refused later unless the host is a loopback address.
func ParseEndpoint(endpoint string, insecure bool) (hostport string, secure bool, err error) {
	bad := func(format string, args ...any) error {
		return &backend.LocationError{Msg: fmt.Sprintf(format, args...)}
	}
	scheme, _, hasScheme := strings.Cut(endpoint, "://")
	if !hasScheme {
		if strings.ContainsAny(endpoint, "/?#@") {
			return "", false, bad("S3 endpoint %q: give host[:port] or a URL such as https://host[:port]", shownEndpoint(endpoint))
		}
		return endpoint, !insecure, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		// url.Error repeats the whole URL, credentials included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", false, bad("S3 endpoint %q is not a URL: %v", shownEndpoint(endpoint), err)
	}
	switch {
	case u.User != nil:
		// Not repeated in the message: it holds a secret.
		return "", false, bad("S3 endpoint: credentials do not belong in the endpoint URL: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	case u.Host == "":
		return "", false, bad("S3 endpoint %q: no host", shownEndpoint(endpoint))
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return "", false, bad("S3 endpoint %q: give only a scheme, host and port (the bucket and prefix go in --repo s3://bucket/prefix)", shownEndpoint(endpoint))
	}
	switch strings.ToLower(scheme) {
	case "https":
		if insecure {
			return "", false, bad("S3 endpoint %q asks for HTTPS, --insecure-http for plain HTTP: give one (an http:// endpoint needs no --insecure-http)", shownEndpoint(endpoint))
		}
		return u.Host, true, nil
	case "http":
		return u.Host, false, nil
	}
	return "", false, bad("S3 endpoint %q: unknown scheme %q (want https:// or, for a loopback test server, http://)", shownEndpoint(endpoint), scheme)
}

// shownEndpoint is endpoint as an error may show it: without what may
// hold a secret (user information before an '@'; a query or fragment,
// which some tools fill with signatures or tokens), each replaced by
// "...".
func shownEndpoint(endpoint string) string {
	if i := strings.IndexAny(endpoint, "?#"); i >= 0 {
		endpoint = endpoint[:i] + endpoint[i:i+1] + "..."
	}
	scheme, rest, ok := strings.Cut(endpoint, "://")
	if !ok {
		scheme, rest = "", endpoint
	} else {
		scheme += "://"
	}
	host, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(host, "@"); i >= 0 {
		host = "...@" + host[i+1:]
	}
	if path != "" || strings.Contains(rest, "/") {
		path = "/" + path
	}
	return scheme + host + path
}

// newClient returns the S3 client of cfg and what its credentials are
// (see identity).
func newClient(ctx context.Context, cfg Config) (*awss3.Client, string, error) {
	if strings.Contains(cfg.Endpoint, "://") || strings.Contains(cfg.Endpoint, "/") {
		return nil, "", fmt.Errorf("S3 endpoint %q: give host[:port] only (see ParseEndpoint)", cfg.Endpoint)
	}
	tr, err := transport(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	creds, who, err := credentialChain(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	opts := awss3.Options{
		Credentials: creds,
		Region:      cfg.Region,
		HTTPClient:  &http.Client{Transport: idleTransport{base: tr, d: idle}},
		// Virtual-host addressing (bucket.host) only where the host is
		// known to serve it: AWS; other stores get path-style, as most
		// of them want.
		UsePathStyle: cfg.PathStyle || !virtualHosted(cfg.Endpoint),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = sdkAttempts
			o.MaxBackoff = time.Second
			o.RateLimiter = ratelimit.None // package retry bounds the retries
			// Timeouts are left to package retry: each costs the idle
			// timeout (or the dial or TLS handshake timeout), and the
			// SDK's attempts would multiply it.
			o.Retryables = append([]retry.IsErrorRetryable{noTimeoutRetries}, o.Retryables...)
		}),
		// Uploads carry the CRC32C computed before them (save.go), and the
		// requests that S3 wants a checksum on get CRC32 from the SDK (never
		// MD5, which GODEBUG=fips140=only refuses). Answers are not checked
		// against whole-object checksums: ranged reads have none, and the
		// repository authenticates what it reads.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		// No "Expect: 100-continue" wait before each upload body.
		ContinueHeaderThresholdBytes: -1,
	}
	if cfg.Secure {
		// Authenticity comes from TLS, integrity from the checksums: the
		// body's SHA-256 (a second pass over every upload) is not signed.
		opts.APIOptions = append(opts.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
	}
	if cfg.Endpoint != DefaultEndpoint {
		scheme := "https://"
		if !cfg.Secure {
			scheme = "http://"
		}
		opts.BaseEndpoint = aws.String(scheme + cfg.Endpoint)
	} // else the SDK picks the region's endpoint, s3.<region>.amazonaws.com
	if opts.Region == "" {
		opts.Region = defaultRegion
	}
	return awss3.New(opts), who, nil
}

// sdkAttempts bounds the SDK's own quick attempts (at most 1 s apart) of
// one request that failed fast (a refused or reset connection, a 5xx);
// package retry adds the slower, logged ones on top.
const sdkAttempts = 3

// noTimeoutRetries keeps the SDK from repeating a request that timed out
// (see sdkAttempts).
var noTimeoutRetries = retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
})

// defaultRegion is where requests are signed for until the bucket's
// region is known (see bucketRegion).
const defaultRegion = "us-east-1"

// virtualHosted reports whether endpoint serves buckets as subdomains
// (bucket.s3.amazonaws.com).
func virtualHosted(endpoint string) bool {
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	return strings.HasSuffix(host, ".amazonaws.com") || strings.HasSuffix(host, ".amazonaws.com.cn")
}

// transport is an HTTP transport with TLS 1.3 at least, the CA bundle if
// one is given, a shorter dial timeout (a dead endpoint must not stall
// every retry for 30 s), and, for plain HTTP, a dialer that connects to
// loopback addresses only.
func transport(ctx context.Context, cfg Config) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tr.ResponseHeaderTimeout = time.Minute
	tr.DisableCompression = true // bodies are read as stored, ranges included
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if cfg.Secure {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS13}
		if cfg.CACertFile != "" {
			pool, err := loadCAs(cfg.CACertFile)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig.RootCAs = pool
		}
	} else {
		if err := checkLoopback(ctx, cfg.Endpoint); err != nil {
			return nil, err
		}
		// The check above is for the message; this is the guarantee, even
		// if the name resolves differently later.
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("refusing plain HTTP to %s: not a loopback address", address)
			}
			return nil
		}
		tr.Proxy = nil // a proxy would carry the plain text off the machine
	}
	tr.DialContext = dialer.DialContext
	return tr, nil
}

func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", file)
	}
	return pool, nil
}

// checkLoopback refuses plain HTTP unless every address of the endpoint's
// host is a loopback address: credentials and data would otherwise cross
// the network unencrypted.
func checkLoopback(ctx context.Context, endpoint string) error {
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	refuse := func(why string) error {
		return fmt.Errorf("plain HTTP (--insecure-http or an http:// endpoint) is only allowed for a loopback endpoint, and %s %s: use HTTPS (with --ca-cert for a private CA)", host, why)
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return refuse("is not loopback")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return refuse(fmt.Sprintf("does not resolve (%v)", err))
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return refuse(fmt.Sprintf("resolves to %s", a.IP))
		}
	}
	return nil
}

// credentialChain returns cfg.Creds, or the first source of credentials
// that the environment configures (defaultChain), and checks that it
// yields credentials: anonymous requests would only fail later with a
// less helpful "access denied". It also returns what they are, for
// messages (see identity).
func credentialChain(ctx context.Context, cfg Config) (aws.CredentialsProvider, string, error) {
	creds, who := cfg.Creds, "the credentials given"
	if creds == nil {
		c, w, err := defaultChain(ctx, cfg)
		if err != nil {
			return nil, "", fmt.Errorf("getting S3 credentials: %w", err)
		}
		if c == nil {
			return nil, "", errNoCredentials
		}
		creds, who = c, w
	}
	if _, ok := creds.(*aws.CredentialsCache); !ok {
		creds = aws.NewCredentialsCache(creds)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := creds.Retrieve(ctx)
	switch {
	case err != nil && cfg.Profile != "":
		// Not the hint of where else to put credentials: the profile
		// asked for is the only source.
		return nil, "", fmt.Errorf("getting S3 credentials from %s: %w", who, err)
	case err != nil:
		return nil, "", fmt.Errorf("%w (%s: %v)", errNoCredentials, who, err)
	case v.AccessKeyID == "" || v.SecretAccessKey == "":
		return nil, "", fmt.Errorf("%w (%s gave none)", errNoCredentials, who)
	}
	return creds, identity(who, v.AccessKeyID), nil
}

var errNoCredentials = errors.New("no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add a profile to ~/.aws/credentials (chosen with --s3-profile or AWS_PROFILE), or run with an IAM role")

// identity describes credentials for messages: where they came from
// (who) and the last four characters of the access key ID, as 'aws
// configure list' shows it. Never the secret.
func identity(who, keyID string) string {
	if len(keyID) < 8 {
		return who
	}
	return fmt.Sprintf("%s, access key ID ****%s", who, keyID[len(keyID)-4:])
}
