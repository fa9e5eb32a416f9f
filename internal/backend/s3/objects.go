package s3

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nestguard/nestguard/internal/backend"
)

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	key, err := b.key(h)
	if err != nil {
		return backend.FileInfo{}, err
	}
	var info minio.ObjectInfo
	err = b.withVersion(ctx, key, func(version string) (err error) {
		info, err = b.client.StatObject(ctx, b.bucket, key, minio.StatObjectOptions{VersionID: version})
		return err
	})
	if err != nil {
		return backend.FileInfo{}, b.denied(err, b.readAction(), h, key, "stat %s", h)
	}
	return backend.FileInfo{Name: path.Base(key), Size: info.Size, ModTime: info.LastModified}, nil
}

// List implements backend.Backend. Keys that do not fit the layout (a
// stray file, a "directory" marker) are skipped.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	ctx, cancel := context.WithCancel(ctx) // stops minio-go's listing goroutine on return
	defer cancel()
	prefix := b.typePrefix(t)
	report := func(obj minio.ObjectInfo) error {
		name, ok := nameOf(t, prefix, obj.Key)
		if !ok {
			b.log.Debug("skipping a key outside the repository layout", "key", obj.Key)
			return nil
		}
		b.remember(obj.Key, obj.VersionID)
		return fn(backend.FileInfo{Name: name, Size: obj.Size, ModTime: obj.LastModified})
	}
	var versions versionedLister
	opts := minio.ListObjectsOptions{Prefix: prefix, Recursive: true, WithVersions: b.versioned}
	for obj := range b.client.ListObjects(ctx, b.bucket, opts) {
		if obj.Err != nil {
			return b.denied(obj.Err, b.listAction(), backend.Handle{Type: t}, prefix, "listing %s", t)
		}
		if !b.versioned {
			if err := report(obj); err != nil {
				return err
			}
			continue
		}
		if prev, ok := versions.add(obj); ok {
			if err := report(prev); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("listing %s: %w", t, err)
	}
	if last, ok := versions.flush(); ok {
		return report(last)
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
		if _, err := b.client.StatObject(ctx, b.bucket, key, minio.StatObjectOptions{VersionID: version}); err != nil {
			return err
		}
		if locked, err := b.LockEnabled(ctx); err != nil {
			return err
		} else if locked {
			if err := b.refuseLocked(ctx, h, key, version); err != nil {
				return err
			}
		}
		err := b.client.RemoveObject(ctx, b.bucket, key, minio.RemoveObjectOptions{VersionID: version})
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
