package s3

import (
	"context"
	"errors"
	"io/fs"
	"net/http"

	"github.com/minio/minio-go/v7"
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
	cfg, err := b.client.GetBucketVersioning(ctx, b.bucket)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotImplemented) {
			// Without permission to ask, fall back to latest versions.
			b.log.Warn("cannot read the bucket's versioning state; reading the latest version of each object", "bucket", b.bucket, "err", err)
			return nil
		}
		return b.wrap(err, "reading the versioning state of bucket %q", b.bucket)
	}
	b.versioned = cfg.Status == "Enabled" || cfg.Status == "Suspended"
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := false
	for obj := range b.client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: key, Recursive: true, WithVersions: true}) {
		if obj.Err != nil {
			return "", obj.Err
		}
		// Versions come newest first: the last one listed is the oldest.
		if obj.Key == key && !obj.IsDeleteMarker {
			v, found = obj.VersionID, true
		}
	}
	if !found {
		return "", minio.ErrorResponse{StatusCode: http.StatusNotFound, Code: "NoSuchKey", Message: "no version of the object exists", Key: key}
	}
	b.remember(key, v)
	return v, nil
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
	var resp minio.ErrorResponse
	return err != nil && (errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound || errors.Is(err, fs.ErrNotExist))
}

// versionedLister groups a version listing by key and reports each key's
// oldest version that is not a delete marker.
type versionedLister struct {
	key     string
	current minio.ObjectInfo
	has     bool
}

// add takes the next listed version; when a new key begins it returns
// the finished previous key's version, if that key has one.
func (l *versionedLister) add(obj minio.ObjectInfo) (minio.ObjectInfo, bool) {
	var out minio.ObjectInfo
	done := false
	if obj.Key != l.key {
		out, done = l.current, l.has
		l.key, l.has = obj.Key, false
	}
	if !obj.IsDeleteMarker {
		l.current, l.has = obj, true
	}
	return out, done
}

// flush returns the last key's version, if it has one.
func (l *versionedLister) flush() (minio.ObjectInfo, bool) {
	return l.current, l.has
}
