package s3

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nestguard/nestguard/internal/backend"
)

// LockEnabled implements backend.Locker: whether the bucket has Object
// Lock enabled. The answer is kept: a bucket's Object Lock cannot be
// turned off.
func (b *Backend) LockEnabled(ctx context.Context) (bool, error) {
	b.mu.Lock()
	known, on := b.lockKnown, b.lockOn
	b.mu.Unlock()
	if known {
		return on, nil
	}
	status, _, _, _, err := b.client.GetObjectLockConfig(ctx, b.bucket)
	var resp minio.ErrorResponse
	switch {
	case errors.As(err, &resp) && resp.Code == "ObjectLockConfigurationNotFoundError":
		status = ""
	case err != nil:
		return false, b.wrap(err, "reading the Object Lock configuration of bucket %q", b.bucket)
	}
	on = status == "Enabled"
	b.mu.Lock()
	b.lockKnown, b.lockOn = true, on
	b.mu.Unlock()
	return on, nil
}

// SetRetention implements backend.Locker. It never shortens a retention
// nor changes an object's mode: an until no later than the current one
// leaves the object as it is, and an object that already has a retention
// keeps its mode (mode applies to objects without one). It needs only
// s3:GetObjectRetention and s3:PutObjectRetention, never
// s3:BypassGovernanceRetention.
//
// A governance retention is deliberately not upgraded to compliance: S3
// counts that as changing a governance retention, which needs the bypass
// permission, and whoever holds that permission can also shorten or remove
// governance retention. No nestguard command needs the upgrade: every
// object is uploaded with the repository's mode (or the bucket default's,
// when stricter), and a governance object is only ever extended, which
// keeps it protected from everyone without the bypass permission.
func (b *Backend) SetRetention(ctx context.Context, h backend.Handle, mode backend.RetentionMode, until time.Time) error {
	if mode != backend.Compliance && mode != backend.Governance {
		return fmt.Errorf("setting the retention of %s: unknown mode %q (want %s or %s)", h, mode, backend.Compliance, backend.Governance)
	}
	key, err := b.key(h)
	if err != nil {
		return err
	}
	until = ceilSecond(until)
	err = b.withVersion(ctx, key, func(version string) error {
		cur, err := b.objectRetention(ctx, key, version)
		if err != nil {
			return err
		}
		if cur.Mode != "" {
			if !until.After(cur.Until) {
				return nil
			}
			mode = cur.Mode
		}
		m := minio.RetentionMode(mode)
		return withContentMD5(func() error {
			return b.client.PutObjectRetention(ctx, b.bucket, key, minio.PutObjectRetentionOptions{
				Mode: &m, RetainUntilDate: &until, VersionID: version,
			})
		})
	})
	if err != nil {
		return b.denied(err, "s3:PutObjectRetention", h, key, "setting the retention of %s to %s until %s", h, mode, until.Format(time.RFC3339))
	}
	return nil
}

// SetLegalHold implements backend.Locker.
func (b *Backend) SetLegalHold(ctx context.Context, h backend.Handle, on bool) error {
	key, err := b.key(h)
	if err != nil {
		return err
	}
	status := minio.LegalHoldDisabled
	if on {
		status = minio.LegalHoldEnabled
	}
	err = b.withVersion(ctx, key, func(version string) error {
		return withContentMD5(func() error {
			return b.client.PutObjectLegalHold(ctx, b.bucket, key, minio.PutObjectLegalHoldOptions{Status: &status, VersionID: version})
		})
	})
	if err != nil {
		return b.denied(err, "s3:PutObjectLegalHold", h, key, "setting the legal hold of %s to %s", h, status)
	}
	return nil
}

// Retention implements backend.Locker.
func (b *Backend) Retention(ctx context.Context, h backend.Handle) (backend.Retention, error) {
	key, err := b.key(h)
	if err != nil {
		return backend.Retention{}, err
	}
	var r backend.Retention
	err = b.withVersion(ctx, key, func(version string) (err error) {
		r, err = b.retention(ctx, key, version)
		return err
	})
	if err != nil {
		return backend.Retention{}, b.denied(err, "s3:GetObjectRetention and s3:GetObjectLegalHold", h, key, "reading the retention of %s", h)
	}
	return r, nil
}

// retention reads the retention and legal hold of one version of key
// (the current one if version is empty). Errors are minio-go's.
func (b *Backend) retention(ctx context.Context, key, version string) (backend.Retention, error) {
	r, err := b.objectRetention(ctx, key, version)
	if err != nil {
		return r, err
	}
	hold, err := b.client.GetObjectLegalHold(ctx, b.bucket, key, minio.GetObjectLegalHoldOptions{VersionID: version})
	switch {
	case noLockConfig(err):
	case err != nil:
		return r, err
	default:
		r.LegalHold = hold != nil && *hold == minio.LegalHoldEnabled
	}
	return r, nil
}

// objectRetention reads the retention mode and date of one version of key,
// not its legal hold. Errors are minio-go's.
func (b *Backend) objectRetention(ctx context.Context, key, version string) (backend.Retention, error) {
	var r backend.Retention
	mode, until, err := b.client.GetObjectRetention(ctx, b.bucket, key, version)
	switch {
	case noLockConfig(err):
	case err != nil:
		return r, err
	default:
		if mode != nil && until != nil {
			r.Mode, r.Until = backend.RetentionMode(*mode), *until
		}
	}
	return r, nil
}

// noLockConfig reports the error S3 gives for an object without
// retention or legal hold.
func noLockConfig(err error) bool {
	var resp minio.ErrorResponse
	return err != nil && errors.As(err, &resp) && resp.Code == "NoSuchObjectLockConfiguration"
}

// BucketDefaultRetention returns the bucket's default retention (what an
// object uploaded without a retention of its own gets): its mode, empty
// when there is none, and its period. A year counts 365.25 days rounded
// up to whole days, as nestguard's own retentions do, so a period of
// years is never counted short.
func (b *Backend) BucketDefaultRetention(ctx context.Context) (backend.RetentionMode, time.Duration, error) {
	_, mode, validity, unit, err := b.client.GetObjectLockConfig(ctx, b.bucket)
	var resp minio.ErrorResponse
	switch {
	case errors.As(err, &resp) && resp.Code == "ObjectLockConfigurationNotFoundError":
		return "", 0, nil
	case err != nil:
		return "", 0, b.wrap(err, "reading the Object Lock configuration of bucket %q", b.bucket)
	case mode == nil || validity == nil || unit == nil || *mode == "":
		return "", 0, nil
	}
	n := time.Duration(*validity)
	var d time.Duration
	switch *unit {
	case minio.Days:
		d = n * 24 * time.Hour
	case minio.Years:
		d = (n*1461 + 3) / 4 * 24 * time.Hour
	default:
		return "", 0, fmt.Errorf("bucket %q: default retention in unknown unit %q (%s)", b.bucket, *unit, b.location)
	}
	return backend.RetentionMode(*mode), d, nil
}
