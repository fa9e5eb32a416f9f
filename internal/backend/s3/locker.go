package s3

import (
	"context"
	"fmt"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

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
	lock, err := b.lockConfig(ctx)
	if err != nil {
		return false, err
	}
	on = lock != nil
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
		_, err = b.client.PutObjectRetention(ctx, &awss3.PutObjectRetentionInput{
			Bucket: &b.bucket, Key: &key, VersionId: optional(version),
			Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionMode(mode), RetainUntilDate: &until},
		})
		return err
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
	status := types.ObjectLockLegalHoldStatusOff
	if on {
		status = types.ObjectLockLegalHoldStatusOn
	}
	err = b.withVersion(ctx, key, func(version string) error {
		_, err := b.client.PutObjectLegalHold(ctx, &awss3.PutObjectLegalHoldInput{
			Bucket: &b.bucket, Key: &key, VersionId: optional(version),
			LegalHold: &types.ObjectLockLegalHold{Status: status},
		})
		return err
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
	// Without Object Lock on the bucket nothing is retained, and S3
	// refuses to be asked (MinIO and versitygw: 400 InvalidRequest).
	// That answer is generic; LockEnabled's is not.
	if on, err := b.LockEnabled(ctx); err != nil {
		return backend.Retention{}, fmt.Errorf("reading the retention of %s: %w", h, err)
	} else if !on {
		return backend.Retention{}, nil
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
// (the current one if version is empty). Errors are the SDK's, or wrap
// errNotLockAnswer.
func (b *Backend) retention(ctx context.Context, key, version string) (backend.Retention, error) {
	r, err := b.objectRetention(ctx, key, version)
	if err != nil {
		return r, err
	}
	hold, err := b.client.GetObjectLegalHold(ctx, &awss3.GetObjectLegalHoldInput{Bucket: &b.bucket, Key: &key, VersionId: optional(version)})
	switch {
	case noLockConfig(err):
		return r, nil
	case unreadableAnswer(err):
		return r, fmt.Errorf("%w: the legal hold of %s: %v", errNotLockAnswer, key, err)
	case err != nil:
		return r, err
	case hold.LegalHold == nil:
		return r, fmt.Errorf("%w: the legal hold of %s: the answer holds no legal hold document", errNotLockAnswer, key)
	}
	switch s := hold.LegalHold.Status; s {
	case types.ObjectLockLegalHoldStatusOn:
		r.LegalHold = true
	case types.ObjectLockLegalHoldStatusOff:
	case "":
		return r, fmt.Errorf("%w: the legal hold of %s: the answer names no legal hold status (is a proxy or another service at the endpoint?)", errNotLockAnswer, key)
	default:
		return r, fmt.Errorf("%w: the legal hold of %s: unknown status %q (want ON or OFF)", errNotLockAnswer, key, s)
	}
	return r, nil
}

// objectRetention reads the retention mode and date of one version of key,
// not its legal hold. Only S3's "no retention" error
// (NoSuchObjectLockConfiguration) means none: an answer that is no
// retention, or one with an unknown mode or no date, is an error wrapping
// errNotLockAnswer, never "not retained". Other errors are the SDK's.
func (b *Backend) objectRetention(ctx context.Context, key, version string) (backend.Retention, error) {
	var r backend.Retention
	out, err := b.client.GetObjectRetention(ctx, &awss3.GetObjectRetentionInput{Bucket: &b.bucket, Key: &key, VersionId: optional(version)})
	switch {
	case noLockConfig(err):
		return r, nil
	case unreadableAnswer(err):
		return r, fmt.Errorf("%w: the retention of %s: %v", errNotLockAnswer, key, err)
	case err != nil:
		return r, err
	case out.Retention == nil:
		// The SDK reads an empty or non-XML body as no document.
		return r, fmt.Errorf("%w: the retention of %s: the answer holds no retention document", errNotLockAnswer, key)
	}
	ret := out.Retention
	switch ret.Mode {
	case types.ObjectLockRetentionModeCompliance, types.ObjectLockRetentionModeGovernance:
	case "":
		return r, fmt.Errorf("%w: the retention of %s: the answer names no mode (is a proxy or another service at the endpoint?)", errNotLockAnswer, key)
	default:
		return r, fmt.Errorf("%w: the retention of %s: unknown mode %q (want COMPLIANCE or GOVERNANCE)", errNotLockAnswer, key, ret.Mode)
	}
	if ret.RetainUntilDate == nil {
		return r, fmt.Errorf("%w: the retention of %s: mode %s with no retain-until date", errNotLockAnswer, key, ret.Mode)
	}
	r.Mode, r.Until = backend.RetentionMode(ret.Mode), *ret.RetainUntilDate
	return r, nil
}

// noLockConfig reports the error S3 gives for an object without
// retention or legal hold: AWS answers 404, MinIO and versitygw 400.
func noLockConfig(err error) bool {
	return errorCode(err) == "NoSuchObjectLockConfiguration"
}

// BucketDefaultRetention returns the bucket's default retention (what an
// object uploaded without a retention of its own gets): its mode, empty
// when there is none, and its period. A year counts 365.25 days rounded
// up to whole days, as nestguard's own retentions do, so a period of
// years is never counted short.
func (b *Backend) BucketDefaultRetention(ctx context.Context) (backend.RetentionMode, time.Duration, error) {
	lock, err := b.lockConfig(ctx)
	if err != nil {
		return "", 0, err
	}
	if lock == nil || lock.Rule == nil || lock.Rule.DefaultRetention == nil || lock.Rule.DefaultRetention.Mode == "" {
		return "", 0, nil
	}
	def := lock.Rule.DefaultRetention
	var d time.Duration
	switch {
	case def.Days != nil && def.Years == nil:
		d = time.Duration(*def.Days) * 24 * time.Hour
	case def.Years != nil && def.Days == nil:
		d = (time.Duration(*def.Years)*1461 + 3) / 4 * 24 * time.Hour
	default:
		return "", 0, fmt.Errorf("bucket %q: default retention with neither or both of days and years (%s)", b.bucket, b.location)
	}
	return backend.RetentionMode(def.Mode), d, nil
}

// lockConfig returns the bucket's Object Lock configuration, nil if it
// has none. Only S3's "no configuration" error
// (ObjectLockConfigurationNotFoundError) means none: a configuration
// always says Object Lock is enabled (the one value S3 has), and an answer
// that does not is an error, not a bucket without Object Lock.
func (b *Backend) lockConfig(ctx context.Context) (*types.ObjectLockConfiguration, error) {
	out, err := b.client.GetObjectLockConfiguration(ctx, &awss3.GetObjectLockConfigurationInput{Bucket: &b.bucket})
	switch {
	case errorCode(err) == "ObjectLockConfigurationNotFoundError":
		return nil, nil
	case unreadableAnswer(err):
		err = fmt.Errorf("%w: %v", errNotLockAnswer, err)
	case err == nil && (out.ObjectLockConfiguration == nil || out.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled):
		var got types.ObjectLockEnabled
		if out.ObjectLockConfiguration != nil {
			got = out.ObjectLockConfiguration.ObjectLockEnabled
		}
		err = fmt.Errorf("%w: ObjectLockEnabled is %q, not %q (is a proxy or another service at the endpoint?)", errNotLockAnswer, got, types.ObjectLockEnabledEnabled)
	}
	if err != nil {
		return nil, b.wrap(err, "reading the Object Lock configuration of bucket %q", b.bucket)
	}
	return out.ObjectLockConfiguration, nil
}
