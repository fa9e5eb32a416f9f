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
	if !b.versioned {
		pages := awss3.NewListObjectsV2Paginator(b.client, &awss3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: &prefix})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err == nil {
				err = b.checkListing(page.Name)
			}
			if err != nil {
				return failed(err)
			}
			for _, obj := range page.Contents {
				if err := report(aws.ToString(obj.Key), aws.ToInt64(obj.Size), aws.ToTime(obj.LastModified), ""); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var versions versionedLister
	reportVersion := func(v types.ObjectVersion) error {
		return report(aws.ToString(v.Key), aws.ToInt64(v.Size), aws.ToTime(v.LastModified), aws.ToString(v.VersionId))
	}
	var fnErr error // fn's, not the listing's
	err := b.listVersions(ctx, prefix, func(v types.ObjectVersion) error {
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
