package s3

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// On a versioned bucket (every Object Lock bucket is one) nestguard reads
// the first version of each key: the one it wrote. nestguard never writes
// a key twice, so any later version is someone else's overwrite, and a
// delete marker someone else's "delete" that removed no data. Reading the
// first version keeps both invisible: a locked repository cannot be
// damaged through the S3 API, only hidden from tools that read the latest
// version.
//
// The version of each key is learnt from listings and uploads and kept;
// a key not seen yet costs one version listing.

// checkVersioning records whether the bucket keeps versions.
func (b *Backend) checkVersioning(ctx context.Context) error {
	cfg, err := b.client.GetBucketVersioning(ctx, &awss3.GetBucketVersioningInput{Bucket: &b.bucket})
	if err != nil {
		if s := statusOf(err); s == http.StatusForbidden || s == http.StatusNotImplemented {
			// Without permission to ask, fall back to latest versions.
			b.log.Warn("cannot read the bucket's versioning state; reading the latest version of each object", "bucket", b.bucket, "err", err)
			return nil
		}
		return b.wrap(err, "reading the versioning state of bucket %q", b.bucket)
	}
	b.versioned = cfg.Status == types.BucketVersioningStatusEnabled || cfg.Status == types.BucketVersioningStatusSuspended
	return nil
}

// version returns the version of key to read: the oldest that is not a
// delete marker ("" on an unversioned bucket). A key without one is
// missing.
func (b *Backend) version(ctx context.Context, key string) (string, error) {
	if !b.versioned {
		return "", nil
	}
	b.mu.Lock()
	v, ok := b.versions[key]
	b.mu.Unlock()
	if ok {
		return v, nil
	}
	found := false
	err := b.listVersions(ctx, key, func(obj types.ObjectVersion) error {
		// Versions come newest first: the last one listed is the oldest.
		if aws.ToString(obj.Key) == key {
			v, found = aws.ToString(obj.VersionId), true
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("no version of %s exists: %w", key, fs.ErrNotExist)
	}
	b.remember(key, v)
	return v, nil
}

// listVersions calls fn with each version (not delete marker) of the keys
// under prefix: grouped by key, newest first. It stops at fn's first
// error and returns it.
func (b *Backend) listVersions(ctx context.Context, prefix string, fn func(types.ObjectVersion) error) error {
	pages := awss3.NewListObjectVersionsPaginator(b.client, &awss3.ListObjectVersionsInput{Bucket: &b.bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err == nil {
			err = b.checkListing(page.Name)
		}
		if err != nil {
			return err
		}
		for _, v := range page.Versions {
			if err := fn(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// optional is version for a request: nil for the current version.
func optional(version string) *string {
	if version == "" {
		return nil
	}
	return &version
}

func (b *Backend) remember(key, version string) {
	if !b.versioned {
		return
	}
	b.mu.Lock()
	b.versions[key] = version
	b.mu.Unlock()
}

func (b *Backend) forget(key string) {
	b.mu.Lock()
	delete(b.versions, key)
	b.mu.Unlock()
}

// withVersion runs op on the version of key to read. A remembered
// version that has gone (removed by another nestguard) is looked up again
// once.
func (b *Backend) withVersion(ctx context.Context, key string, op func(version string) error) error {
	for try := 0; ; try++ {
		v, err := b.version(ctx, key)
		if err != nil {
			return err
		}
		err = op(v)
		if try == 0 && v != "" && isNotFound(err) {
			b.forget(key)
			continue
		}
		return err
	}
}

func isNotFound(err error) bool {
	return err != nil && (statusOf(err) == http.StatusNotFound || errors.Is(err, fs.ErrNotExist))
}

// versionedLister groups a version listing by key and reports each key's
// oldest version.
type versionedLister struct {
	key     string
	current types.ObjectVersion
	has     bool
}

// add takes the next listed version; when a new key begins it returns
// the finished previous key's version, if that key has one.
func (l *versionedLister) add(obj types.ObjectVersion) (types.ObjectVersion, bool) {
	var out types.ObjectVersion
	done := false
	if k := aws.ToString(obj.Key); k != l.key {
		out, done = l.current, l.has
		l.key = k
	}
	l.current, l.has = obj, true
	return out, done
}

// flush returns the last key's version, if it has one.
func (l *versionedLister) flush() (types.ObjectVersion, bool) {
	return l.current, l.has
}

// errNotListing is a listing's answer that names no bucket: the SDK reads
// any XML (a proxy's web page, say) as an empty listing, which must not
// pass for a repository without objects.
var errNotListing = errors.New("the answer is not an S3 listing")

// checkListing checks that a listing's answer names the bucket, as S3's
// ListBucketResult and ListVersionsResult do.
func (b *Backend) checkListing(name *string) error {
	if got := aws.ToString(name); got != b.bucket {
		return fmt.Errorf("%w: it names bucket %q, not %q (is a proxy or another service at the endpoint?)", errNotListing, got, b.bucket)
	}
	return nil
}
