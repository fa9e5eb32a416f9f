package repository

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// Object Lock (WORM) support. A repository whose config has an ObjectLock
// policy lives on a store that enforces retention (backend.Locker): every
// object is written with a retain-until date of at least now + MinRetention,
// and callers extend the retention of older objects that new snapshots
// reference (see internal/retention). Nestguard never removes an object
// before CanDelete allows it.

// Object Lock modes as the config records them.
const (
	LockCompliance = "compliance"
	LockGovernance = "governance"
)

// RetentionDefaulter is implemented by backends that can stamp a retention
// on every object they save from now on: each later Save carries retention
// mode until the moment of the save plus d.
type RetentionDefaulter interface {
	SetDefaultRetention(mode backend.RetentionMode, d time.Duration)
}

// Locker returns the repository's store as a Locker when it is one.
func (r *Repository) Locker() (backend.Locker, bool) { return backend.As[backend.Locker](r.be) }

// BackendMode maps the config's mode to the storage's.
func (o *ObjectLock) BackendMode() (backend.RetentionMode, error) {
	switch o.Mode {
	case LockCompliance:
		return backend.Compliance, nil
	case LockGovernance:
		return backend.Governance, nil
	}
	return "", fmt.Errorf("object lock mode %q: want %s or %s", o.Mode, LockCompliance, LockGovernance)
}

func (o *ObjectLock) validate() error {
	if _, err := o.BackendMode(); err != nil {
		return err
	}
	if o.MinRetention <= 0 {
		return fmt.Errorf("object lock needs a positive minimum retention, got %s", o.MinRetention)
	}
	return nil
}

// NewObjectLock parses the --object-lock and --min-retention flags.
func NewObjectLock(mode, minRetention string) (*ObjectLock, error) {
	if minRetention == "" {
		return nil, errors.New("--object-lock needs --min-retention (for example 7y, 90d, 12h)")
	}
	d, err := ParseRetention(minRetention)
	if err != nil {
		return nil, err
	}
	o := &ObjectLock{Mode: strings.ToLower(mode), MinRetention: d}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// Day is the retention unit "d". A year ("y") counts 365.25 days, and a
// number of years is rounded up to whole days, so that "7y" (2557 days)
// always covers the leap days of the period.
const Day = 24 * time.Hour

// maxRetention bounds parsed retentions (S3 allows 100 years).
const maxRetention = 100 * 366 * Day

// ParseRetention parses a retention such as "7y", "90d", "36h", "30m",
// "10s", or a sum like "1y30d". Units: y (years of 365.25 days, the total
// of years rounded up to whole days), d (days of 24 hours), h, m (minutes),
// s (seconds; for tests).
func ParseRetention(s string) (time.Duration, error) {
	orig := s
	if s == "" {
		return 0, errors.New("empty retention: give a number and a unit, for example 7y or 90d")
	}
	var years int64
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i == len(s) {
			return 0, fmt.Errorf("retention %q: want numbers each followed by a unit (y, d, h, m, s), for example 7y or 1y30d", orig)
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("retention %q is longer than 100 years", orig)
		}
		var unit time.Duration
		switch s[i] {
		case 'y':
			years += n
			if years > 100 {
				return 0, fmt.Errorf("retention %q is longer than 100 years", orig)
			}
		case 'd':
			unit = Day
		case 'h':
			unit = time.Hour
		case 'm':
			unit = time.Minute
		case 's':
			unit = time.Second
		default:
			return 0, fmt.Errorf("retention %q: unknown unit %q (want y, d, h, m or s)", orig, s[i])
		}
		if unit > 0 && n > int64(maxRetention/unit) {
			return 0, fmt.Errorf("retention %q is longer than 100 years", orig)
		}
		total += time.Duration(n) * unit
		if total > maxRetention {
			return 0, fmt.Errorf("retention %q is longer than 100 years", orig)
		}
		s = s[i+1:]
	}
	// 365.25 days a year, rounded up to a whole day: (years*1461+3)/4 days.
	total += time.Duration((years*1461+3)/4) * Day
	if total <= 0 || total > maxRetention {
		return 0, fmt.Errorf("retention %q must be between 1s and 100 years", orig)
	}
	return total, nil
}

// FormatRetention prints d in the largest units that keep it exact, for
// messages: 2557 days prints as "2557d", 36 hours as "1d12h".
func FormatRetention(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		d time.Duration
		c byte
	}{{Day, 'd'}, {time.Hour, 'h'}, {time.Minute, 'm'}, {time.Second, 's'}} {
		if n := d / u.d; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteByte(u.c)
			d -= n * u.d
		}
	}
	if d > 0 {
		b.WriteString(d.String())
	}
	return b.String()
}

// ErrNoObjectLock says the store cannot enforce the requested policy.
var ErrNoObjectLock = errors.New("storage has no Object Lock")

// BucketDefaulter is implemented by stores (package s3) whose bucket can
// have a default retention: what an object uploaded without one gets.
// mode is empty when the bucket has none.
type BucketDefaulter interface {
	BucketDefaultRetention(ctx context.Context) (mode backend.RetentionMode, d time.Duration, err error)
}

// Strengthened reports whether o is stricter than asked: a longer minimum
// or compliance for governance, taken from the bucket's default retention.
func (o *ObjectLock) Strengthened(asked *ObjectLock) bool {
	return o != nil && asked != nil && (o.MinRetention != asked.MinRetention || o.Mode != asked.Mode)
}

// effectiveObjectLock returns o made at least as strict as the bucket's
// default retention: every object nestguard uploads carries its own
// retention, which replaces the bucket's default, so a shorter minimum
// would silently shorten what the bucket's owner configured. The longer
// minimum and the stricter mode win.
func effectiveObjectLock(ctx context.Context, be backend.Backend, o *ObjectLock) (*ObjectLock, error) {
	bd, ok := backend.As[BucketDefaulter](be)
	if !ok {
		return o, nil
	}
	mode, d, err := bd.BucketDefaultRetention(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the default retention of %s: %w", be.Location(), err)
	}
	eff := *o
	if mode == "" {
		return &eff, nil
	}
	if d > eff.MinRetention {
		eff.MinRetention = d
	}
	if mode == backend.Compliance {
		eff.Mode = LockCompliance
	}
	return &eff, nil
}

// checkObjectLock refuses a policy the store cannot enforce, and returns
// the policy to record: o, made at least as strict as the bucket's default
// retention (see effectiveObjectLock). It is called by Init before
// anything is written.
func checkObjectLock(ctx context.Context, be backend.Backend, o *ObjectLock) (*ObjectLock, error) {
	if o == nil {
		return nil, nil
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := checkLockable(ctx, be); err != nil {
		return nil, err
	}
	return effectiveObjectLock(ctx, be, o)
}

// checkLockable refuses a store that cannot enforce retention.
func checkLockable(ctx context.Context, be backend.Backend) error {
	l, ok := backend.As[backend.Locker](be)
	if !ok {
		return fmt.Errorf("%w: %s cannot enforce retention; --object-lock needs an S3 bucket created with Object Lock enabled", ErrNoObjectLock, be.Location())
	}
	on, err := l.LockEnabled(ctx)
	if err != nil {
		return fmt.Errorf("checking Object Lock on %s: %w", be.Location(), err)
	}
	if !on {
		return fmt.Errorf("%w: bucket %s has no Object Lock: create it with object lock enabled (aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket, or mc mb --with-lock); it cannot be turned on for an existing bucket's old objects", ErrNoObjectLock, be.Location())
	}
	if _, ok := backend.As[RetentionDefaulter](be); !ok {
		return fmt.Errorf("%w: the %s backend cannot stamp retention on new objects", ErrNoObjectLock, be.Location())
	}
	return nil
}

// applyDefaultRetention makes every later Save carry the policy's minimum
// retention. It runs when a repository is created or opened.
func (r *Repository) applyDefaultRetention() {
	o := r.cfg.ObjectLock
	if o == nil {
		return
	}
	mode, err := o.BackendMode()
	if err != nil {
		r.log.Warn("repository config has an invalid object lock mode; new objects get no retention", "err", err)
		return
	}
	d, ok := backend.As[RetentionDefaulter](r.be)
	if !ok {
		r.log.Warn("the repository has an Object Lock policy but its storage cannot enforce it", "location", r.be.Location())
		return
	}
	d.SetDefaultRetention(mode, o.MinRetention)
}

// followBucketDefault makes new objects carry at least the bucket's
// default retention when it became stricter than the policy after init
// (the policy's own minimum still governs extensions): an object's own
// retention replaces the bucket's default, and must not weaken it. It
// costs one request per opening of a repository with a policy.
func (r *Repository) followBucketDefault(ctx context.Context) {
	o := r.cfg.ObjectLock
	if o == nil {
		return
	}
	eff, err := effectiveObjectLock(ctx, r.be, o)
	if err != nil {
		r.log.Warn("cannot read the bucket's default retention; new objects get the repository's minimum", "err", err)
		return
	}
	if !eff.Strengthened(o) {
		return
	}
	mode, err := eff.BackendMode()
	d, ok := backend.As[RetentionDefaulter](r.be)
	if err != nil || !ok {
		return
	}
	r.log.Warn("the bucket's default retention is stricter than the repository's policy: new objects get the bucket's",
		"bucket_mode", eff.Mode, "bucket_retention", FormatRetention(eff.MinRetention),
		"policy_mode", o.Mode, "policy_retention", FormatRetention(o.MinRetention))
	d.SetDefaultRetention(mode, eff.MinRetention)
}

// retentionMargin is how far past the needed date a short retention is
// extended: a tenth of the minimum retention, at most 30 days. Without it a
// daily backup would extend every old pack it references by one day, every
// day; with it each old pack is extended about once a month.
func retentionMargin(minRetention time.Duration) time.Duration {
	return min(minRetention/10, 30*Day)
}

// ExtendRetention makes every object in handles retained until at least
// until, under the repository's Object Lock mode. Objects already retained
// that long are skipped; retention is never shortened. Objects found short
// are extended to until plus a small margin (see retentionMargin). It
// returns how many objects it extended.
func (r *Repository) ExtendRetention(ctx context.Context, handles []backend.Handle, until time.Time) (extended int, err error) {
	o := r.cfg.ObjectLock
	if o == nil {
		return 0, fmt.Errorf("repository at %s has no Object Lock policy: retention applies only to repositories created with --object-lock", r.be.Location())
	}
	mode, err := o.BackendMode()
	if err != nil {
		return 0, err
	}
	l, ok := r.Locker()
	if !ok {
		return 0, fmt.Errorf("%w: %s cannot enforce retention", ErrNoObjectLock, r.be.Location())
	}
	if !until.After(time.Now()) {
		return 0, nil // a date in the past protects nothing (and S3 refuses it)
	}
	target := until.Add(retentionMargin(o.MinRetention))
	var n atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.retentionRequests)
	for _, h := range handles {
		g.Go(func() error {
			cur, err := l.Retention(gctx, h)
			if err != nil {
				return fmt.Errorf("reading the retention of %s: %w", h, err)
			}
			if cur.Mode != "" && !cur.Until.Before(until) {
				return nil
			}
			// A governance object is not moved to compliance (nor back):
			// the stronger existing mode is kept, only the date moves.
			m := mode
			if cur.Mode != "" {
				m = cur.Mode
			}
			if err := l.SetRetention(gctx, h, m, target); err != nil {
				return fmt.Errorf("extending the retention of %s to %s: %w", h, fmtUntil(target), err)
			}
			n.Add(1)
			return nil
		})
	}
	err = g.Wait()
	return int(n.Load()), err
}

// IndexPacks reads every index object and returns the packs each lists.
// Retention and legal holds use it to find the index objects a snapshot's
// packs need. Unreadable index objects are left out (verify reports them).
func (r *Repository) IndexPacks(ctx context.Context) (map[id.ID][]id.ID, error) {
	ids, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		return nil, err
	}
	out := make(map[id.ID][]id.ID, len(ids))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.metaReads)
	for _, iid := range ids {
		g.Go(func() error {
			plain, err := r.loadSealed(gctx, backend.IndexFile, iid)
			var f *index.File
			if err == nil {
				f, err = index.Decode(plain)
			}
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				r.log.Warn("unreadable index object", "id", iid.String(), "err", err)
				return nil
			}
			packs := make([]id.ID, len(f.Packs))
			for i, p := range f.Packs {
				packs[i] = p.Pack
			}
			mu.Lock()
			out[iid] = packs
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// CanDelete reports whether h may be removed now. On a store without
// Object Lock it always may. Otherwise it may not while a legal hold is on
// (until is then the retention end, possibly zero: the hold must be
// released first) or before its retention ends (until).
func (r *Repository) CanDelete(ctx context.Context, h backend.Handle) (ok bool, until time.Time, err error) {
	l, isLocker, err := r.lockingStore(ctx)
	if err != nil || !isLocker {
		return err == nil, time.Time{}, err
	}
	ret, err := l.Retention(ctx, h)
	if err != nil {
		return false, time.Time{}, fmt.Errorf("reading the retention of %s: %w", h, err)
	}
	locked := ret.Mode != "" && time.Now().Before(ret.Until)
	return !locked && !ret.LegalHold, ret.Until, nil
}

// LockingStore returns the repository's store as a Locker when it
// enforces retention: an S3 bucket without Object Lock is a Locker that
// retains nothing (and answers no retention request).
func (r *Repository) LockingStore(ctx context.Context) (backend.Locker, bool, error) {
	return r.lockingStore(ctx)
}

func (r *Repository) lockingStore(ctx context.Context) (backend.Locker, bool, error) {
	l, ok := r.Locker()
	if !ok {
		return nil, false, nil
	}
	on, err := l.LockEnabled(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("checking Object Lock on %s: %w", r.be.Location(), err)
	}
	return l, on, nil
}

// ErrRetained says an object cannot be deleted yet.
var ErrRetained = errors.New("object is retained")

// CheckDeletable returns nil when h may be removed now, and otherwise an
// error wrapping ErrRetained that tells the user when it can be.
func (r *Repository) CheckDeletable(ctx context.Context, h backend.Handle) error {
	l, isLocker, err := r.lockingStore(ctx)
	if err != nil || !isLocker {
		return err
	}
	ret, err := l.Retention(ctx, h)
	if err != nil {
		return fmt.Errorf("reading the retention of %s: %w", h, err)
	}
	if ret.LegalHold {
		return fmt.Errorf("%s: %w: it is under a legal hold; it can be deleted only after 'nestguard hold release' and the end of its retention (%s)", h, ErrRetained, fmtUntil(ret.Until))
	}
	if ret.Mode != "" && time.Now().Before(ret.Until) {
		return fmt.Errorf("%s: %w: under %s retention until %s; it becomes deletable then", h, ErrRetained, strings.ToLower(string(ret.Mode)), fmtUntil(ret.Until))
	}
	return nil
}

func fmtUntil(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// CleanStaleTemp removes the temporary data that interrupted writers left
// in the store (backend.TempCleaner: temporary files, incomplete multipart
// uploads) older than backend.StaleTempAge, and logs what it removed as a
// warning: it means an earlier command was killed. Every command that
// writes calls it first. A failure is logged, not returned: the command's
// own work does not depend on it; a refusal of permission only at debug
// level.
func (r *Repository) CleanStaleTemp(ctx context.Context) {
	c, ok := backend.As[backend.TempCleaner](r.be)
	if !ok {
		return
	}
	n, err := c.CleanTemp(ctx, backend.StaleTempAge)
	if n > 0 {
		r.log.Warn("removed temporary data left by an interrupted command", "count", n,
			"older_than", backend.StaleTempAge.String(), "location", r.be.Location())
	}
	switch {
	case err == nil || ctx.Err() != nil:
	case errors.Is(err, fs.ErrPermission):
		// Only the backup writer's role may list and abort multipart
		// uploads (docs/storage.md, "S3 roles"); the other roles have
		// nothing to clean up and need not be allowed to.
		r.log.Debug("not allowed to look for stale temporary data; skipped", "location", r.be.Location(), "err", err)
	default:
		r.log.Warn("cannot remove stale temporary data", "location", r.be.Location(), "err", err)
	}
}
