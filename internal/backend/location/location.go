// Package location turns a --repo string into a storage backend: a local
// directory (a path, "file:///path" or "local:/path") or an S3 prefix
// ("s3://bucket/prefix").
package location

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
)

// Options configures backends that need more than a location.
type Options struct {
	S3Endpoint   string // host[:port]; empty means AWS
	S3Region     string
	S3PathStyle  bool
	CACertFile   string // PEM bundle of CAs to trust for TLS
	InsecureHTTP bool   // plain HTTP, for loopback test servers only
	Logger       *slog.Logger
	// LookupEnv is where S3 credentials and AWS_REGION are read from;
	// nil means the process's environment.
	LookupEnv func(string) (string, bool)
	// S3Profile, when set, is the one profile of the shared AWS files
	// the S3 credentials come from (see s3.Config.Profile);
	// S3ProfileOrigin says where it was given (a flag, a variable, the
	// config file), for messages.
	S3Profile, S3ProfileOrigin string
	// S3IdleTimeout is how long an S3 request may wait for the store
	// without progress; zero means s3.DefaultIdleTimeout.
	S3IdleTimeout time.Duration
}

// Open returns the backend of an existing repository. A local directory
// that does not exist is not an error here: the repository layer reports
// that no repository is there.
func Open(ctx context.Context, repo string, o Options) (backend.Backend, error) {
	return open(ctx, repo, o, false)
}

// Create returns the backend for a new repository, creating the local
// directory layout; init then checks that no repository exists yet.
func Create(ctx context.Context, repo string, o Options) (backend.Backend, error) {
	return open(ctx, repo, o, true)
}

func open(ctx context.Context, repo string, o Options, create bool) (backend.Backend, error) {
	loc, err := parse(repo)
	if err != nil {
		return nil, err
	}
	if loc.bucket != "" {
		return openS3(ctx, loc.bucket, loc.prefix, o, create)
	}
	var be *local.Backend
	if create {
		be, err = local.Create(loc.dir)
	} else {
		be, err = local.Open(loc.dir)
	}
	if err != nil {
		return nil, err // a nil *local.Backend must not become a non-nil interface
	}
	return be, nil
}

// location is a parsed repository string: either dir (absolute) or bucket
// and prefix are set.
type location struct {
	dir    string
	bucket string
	prefix string // without leading or trailing slashes; may be empty
}

func parse(repo string) (location, error) {
	switch {
	case repo == "":
		return location{}, errors.New("no repository given: use --repo or set NESTGUARD_REPO")
	case strings.HasPrefix(repo, "s3://"):
		return parseS3(repo)
	case strings.HasPrefix(repo, "s3:"):
		return location{}, fmt.Errorf("repository %q: write S3 repositories as s3://bucket/prefix", withoutCredentials(repo))
	case strings.HasPrefix(repo, "file://"):
		return parseFileURL(repo)
	case strings.HasPrefix(repo, "local:"):
		return localDir(repo, strings.TrimPrefix(repo, "local:"))
	}
	if scheme, _, ok := strings.Cut(repo, "://"); ok && isScheme(scheme) {
		// Taking "sftp://host/x" as a relative directory would silently
		// back up into ./sftp:/host/x.
		return location{}, fmt.Errorf("repository %q: unsupported scheme %q (use a directory or s3://bucket/prefix)", withoutCredentials(repo), scheme)
	}
	return localDir(repo, repo)
}

// withoutCredentials returns repo, a URL refused, with what stands before
// an "@" in its host part (a user and password, an access key and its
// secret) replaced by "xxxxx", for an error message: cron mail and the
// journal keep what nestguard prints.
func withoutCredentials(repo string) string {
	scheme, rest, ok := strings.Cut(repo, "://")
	if !ok {
		scheme, rest, ok = strings.Cut(repo, ":")
	}
	if !ok {
		return repo
	}
	host, path, slash := strings.Cut(rest, "/")
	i := strings.LastIndex(host, "@")
	if i < 0 {
		return repo
	}
	out := scheme + repo[len(scheme):len(repo)-len(rest)] + "xxxxx" + host[i:]
	if slash {
		out += "/" + path
	}
	return out
}

func parseS3(repo string) (location, error) {
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(repo, "s3://"), "/")
	if i := strings.LastIndex(bucket, "@"); i >= 0 {
		// Not repeated: what is before the @ is a secret, and errors are
		// logged.
		return location{}, fmt.Errorf("repository s3://xxxxx@%s: credentials in the repository URL are not read: give them as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile, or a role), and the repository as s3://bucket/prefix with --s3-endpoint for the server", bucket[i+1:])
	}
	if bucket == "" {
		return location{}, fmt.Errorf("repository %q: no bucket: use s3://bucket/prefix", repo)
	}
	return location{bucket: bucket, prefix: strings.Trim(prefix, "/")}, nil
}

func parseFileURL(repo string) (location, error) {
	u, err := url.Parse(repo)
	if err != nil {
		return location{}, fmt.Errorf("repository %q: %w", repo, err)
	}
	if u.Host != "" && u.Host != "localhost" {
		return location{}, fmt.Errorf("repository %q: file URLs name a local path (file:///path), not host %q", repo, u.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		// Dropping them would save to a different directory than written.
		return location{}, fmt.Errorf("repository %q: a file URL has no query or fragment (escape '?' and '#' as %%3F and %%23)", repo)
	}
	return localDir(repo, u.Path)
}

// localDir makes path absolute: relative paths are accepted and resolved
// against the working directory now, so messages show where data goes.
func localDir(repo, path string) (location, error) {
	if path == "" {
		return location{}, fmt.Errorf("repository %q: no directory given", repo)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return location{}, fmt.Errorf("repository %q: %w", repo, err)
	}
	return location{dir: abs}, nil
}

// isScheme reports whether s is a URL scheme (RFC 3986: a letter, then
// letters, digits, '+', '-' or '.').
func isScheme(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !('0' <= c && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
