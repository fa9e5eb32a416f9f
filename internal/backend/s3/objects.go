package s3

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/nestguard/nestguard/internal/backend"
)

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	key, err := b.key(h)
	if err != nil {
		return backend.FileInfo{}, err
	}
	var info *awss3.HeadObjectOutput
	err = b.withVersion(ctx, key, func(version string) (err error) {
		info, err = b.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &b.bucket, Key: &key, VersionId: optional(version)})
		return err
	})
	if err != nil {
		return backend.FileInfo{}, b.denied(err, b.readAction(), h, key, "stat %s", h)
	}
	return backend.FileInfo{Name: path.Base(key), Size: aws.ToInt64(info.ContentLength), ModTime: aws.ToTime(info.LastModified)}, nil
}

// List implements backend.Backend. Keys that do not fit the layout (a
// stray file, a "directory" marker) are skipped.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	prefix := b.typePrefix(t)
	report := func(key string, size int64, mod time.Time, version string) error {
		name, ok := nameOf(t, prefix, key)
		if !ok {
			b.log.Debug("skipping a key outside the repository layout", "key", key)
			return nil
		}
		b.remember(key, version)
		return fn(backend.FileInfo{Name: name, Size: size, ModTime: mod})
	}
	failed := func(err error) error {
		return b.denied(err, b.listAction(), backend.Handle{Type: t}, prefix, "listing %s", t)
	}
	var fnErr error // fn's, not the listing's
	var err error
	if !b.versioned {
		err = listRanges(ctx, prefix, b.objectPager(prefix, ""), func(after string) pager[types.Object] { return b.objectPager(prefix, after) },
			func(o types.Object) string { return aws.ToString(o.Key) },
			func(o types.Object) error {
				fnErr = report(aws.ToString(o.Key), aws.ToInt64(o.Size), aws.ToTime(o.LastModified), "")
				return fnErr
			})
		if fnErr != nil {
			return fnErr
		}
		if err != nil {
			return failed(err)
		}
		return nil
	}
	var versions versionedLister
	reportVersion := func(v types.ObjectVersion) error {
		return report(aws.ToString(v.Key), aws.ToInt64(v.Size), aws.ToTime(v.LastModified), aws.ToString(v.VersionId))
	}
	err = listRanges(ctx, prefix, b.versionPager(prefix, ""), func(after string) pager[types.ObjectVersion] { return b.versionPager(prefix, after) },
		func(v types.ObjectVersion) string { return aws.ToString(v.Key) },
		func(v types.ObjectVersion) error {
			if prev, ok := versions.add(v); ok {
				fnErr = reportVersion(prev)
			}
			return fnErr
		})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return failed(err)
	}
	if last, ok := versions.flush(); ok {
		return reportVersion(last)
	}
	return nil
}

// objectPager lists the keys under prefix after key after ("": all).
func (b *Backend) objectPager(prefix, after string) pager[types.Object] {
	in := &awss3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: &prefix}
	if after != "" {
		in.StartAfter = &after
	}
	return objectPager{b, awss3.NewListObjectsV2Paginator(b.client, in)}
}

type objectPager struct {
	b *Backend
	p *awss3.ListObjectsV2Paginator
}

func (o objectPager) more() bool { return o.p.HasMorePages() }

func (o objectPager) next(ctx context.Context) ([]types.Object, error) {
	page, err := o.p.NextPage(ctx)
	if err == nil {
		err = o.b.checkListing(page.Name)
	}
	if err != nil {
		return nil, err
	}
	return page.Contents, nil
}

// versionPager lists the versions of the keys under prefix after key
// after ("": all).
func (b *Backend) versionPager(prefix, after string) pager[types.ObjectVersion] {
	in := &awss3.ListObjectVersionsInput{Bucket: &b.bucket, Prefix: &prefix}
	if after != "" {
		in.KeyMarker = &after
	}
	return versionPager{b, awss3.NewListObjectVersionsPaginator(b.client, in)}
}

type versionPager struct {
	b *Backend
	p *awss3.ListObjectVersionsPaginator
}

func (v versionPager) more() bool { return v.p.HasMorePages() }

func (v versionPager) next(ctx context.Context) ([]types.ObjectVersion, error) {
	page, err := v.p.NextPage(ctx)
	if err == nil {
		err = v.b.checkListing(page.Name)
	}
	if err != nil {
		return nil, err
	}
	return page.Versions, nil
}

// nameOf returns the object name of key, listed under prefix for type t.
func nameOf(t backend.FileType, prefix, key string) (string, bool) {
	if t == backend.ConfigFile {
		return string(backend.ConfigFile), key == prefix
	}
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", false
	}
	if t == backend.PackFile {
		dir, name, ok := strings.Cut(rest, "/")
		if !ok || len(dir) != 2 || !strings.HasPrefix(name, dir) {
			return "", false
		}
		rest = name
	}
	return rest, validName(rest)
}

// Remove implements backend.Backend. It never tries to delete an object
// under retention or legal hold: it says until when the object is kept.
// On versioned buckets the version nestguard reads is deleted for good,
// not hidden behind a delete marker.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	key, err := b.key(h)
	if err != nil {
		return err
	}
	err = b.withVersion(ctx, key, func(version string) error {
		// Stat first: S3 reports success for deleting a missing key.
		if _, err := b.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &b.bucket, Key: &key, VersionId: optional(version)}); err != nil {
			return err
		}
		if locked, err := b.LockEnabled(ctx); err != nil {
			return err
		} else if locked {
			if err := b.refuseLocked(ctx, h, key, version); err != nil {
				return err
			}
		}
		_, err := b.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &b.bucket, Key: &key, VersionId: optional(version)})
		if err != nil {
			// Locked after all (a race with a hold, or a bucket default
			// retention): say until when.
			if rerr := b.refuseLocked(ctx, h, key, version); rerr != nil && errors.Is(rerr, fs.ErrPermission) {
				return fmt.Errorf("%w (%v)", rerr, err)
			}
		}
		return err
	})
	b.forget(key)
	if err != nil {
		var op *opError
		if errors.As(err, &op) || errors.Is(err, fs.ErrPermission) {
			return err
		}
		return b.denied(err, b.deleteAction(), h, key, "removing %s", h)
	}
	return nil
}

// refuseLocked returns an error saying why and until when h cannot be
// deleted, or nil if it can.
func (b *Backend) refuseLocked(ctx context.Context, h backend.Handle, key, version string) error {
	r, err := b.retention(ctx, key, version)
	if err != nil {
		return b.wrap(err, "removing %s: reading its retention", h)
	}
	switch {
	case r.LegalHold:
		return fmt.Errorf("removing %s (%s): %w: the object is under a legal hold; it can be deleted only after the hold is released", h, b.location, fs.ErrPermission)
	case r.Mode != "" && r.Until.After(time.Now()):
		return fmt.Errorf("removing %s (%s): %w: the object is retained (%s) until %s; it can be deleted after then", h, b.location, fs.ErrPermission, r.Mode, r.Until.UTC().Format(time.RFC3339))
	}
	return nil
}
