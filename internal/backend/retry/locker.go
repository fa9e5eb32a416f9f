package retry

import (
	"context"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
)

// retentionDefaulter is the optional method of WORM backends (package s3)
// that gives every later Save a retention.
type retentionDefaulter interface {
	SetDefaultRetention(mode backend.RetentionMode, d time.Duration)
}

// lockingBackend is a Backend over a backend.Locker; the Locker methods
// are retried too.
type lockingBackend struct {
	*Backend
	l backend.Locker
}

var _ backend.Locker = (*lockingBackend)(nil)

func (b *lockingBackend) LockEnabled(ctx context.Context) (bool, error) {
	var on bool
	err := b.do(ctx, "reading the Object Lock configuration", func() (err error) {
		on, err = b.l.LockEnabled(ctx)
		return err
	})
	return on, err
}

func (b *lockingBackend) SetRetention(ctx context.Context, h backend.Handle, mode backend.RetentionMode, until time.Time) error {
	return b.do(ctx, "setting the retention of "+h.String(), func() error {
		return b.l.SetRetention(ctx, h, mode, until)
	})
}

func (b *lockingBackend) SetLegalHold(ctx context.Context, h backend.Handle, on bool) error {
	return b.do(ctx, "setting the legal hold of "+h.String(), func() error {
		return b.l.SetLegalHold(ctx, h, on)
	})
}

func (b *lockingBackend) Retention(ctx context.Context, h backend.Handle) (backend.Retention, error) {
	var r backend.Retention
	err := b.do(ctx, "reading the retention of "+h.String(), func() (err error) {
		r, err = b.l.Retention(ctx, h)
		return err
	})
	return r, err
}

// defaultingBackend also passes SetDefaultRetention through.
type defaultingBackend struct {
	*lockingBackend
	d retentionDefaulter
}

func (b *defaultingBackend) SetDefaultRetention(mode backend.RetentionMode, d time.Duration) {
	b.d.SetDefaultRetention(mode, d)
}
