// Package locktest is an in-memory backend that enforces retention and
// legal holds the way an S3 bucket with Object Lock does, for unit tests of
// the code that sets them.
package locktest

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
)

// Backend is a mem.Backend with Object Lock. The zero value is not usable:
// call New.
type Backend struct {
	*mem.Backend
	enabled bool

	mu          sync.Mutex
	defMode     backend.RetentionMode
	defDuration time.Duration
	state       map[backend.Handle]backend.Retention

	offset time.Duration // Advance

	retentionCalls int // changes that took effect
	legalHoldCalls int
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Locker  = (*Backend)(nil)
)

// New returns an empty store; enabled is what LockEnabled reports.
func New(enabled bool) *Backend {
	return &Backend{Backend: mem.New(), enabled: enabled, state: make(map[backend.Handle]backend.Retention)}
}

func key(h backend.Handle) backend.Handle {
	if h.Type == backend.ConfigFile {
		h.Name = string(backend.ConfigFile)
	}
	return h
}

// Advance moves the store's clock, which retention is judged by, d ahead
// of the real one: a test's way to let retention end.
func (b *Backend) Advance(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offset += d
}

func (b *Backend) now() time.Time { return time.Now().Add(b.offset) }

// SetDefaultRetention makes every later Save retain its object until the
// time of the save plus d.
func (b *Backend) SetDefaultRetention(mode backend.RetentionMode, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.defMode, b.defDuration = mode, d
}

// Save stores the object and stamps the default retention on it.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	if err := b.Backend.Save(ctx, h, rd, size); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.defMode != "" {
		b.state[key(h)] = backend.Retention{Mode: b.defMode, Until: b.now().Add(b.defDuration)}
	}
	return nil
}

// Remove refuses objects under retention or legal hold, as S3 does without
// a governance bypass.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	b.mu.Lock()
	r := b.state[key(h)]
	now := b.now()
	b.mu.Unlock()
	if r.LegalHold || (r.Mode != "" && now.Before(r.Until)) {
		return fmt.Errorf("removing %s: access denied: object is WORM protected", h)
	}
	if err := b.Backend.Remove(ctx, h); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.state, key(h))
	b.mu.Unlock()
	return nil
}

func (b *Backend) exists(ctx context.Context, h backend.Handle) error {
	_, err := b.Backend.Stat(ctx, h)
	return err
}

// LockEnabled implements backend.Locker.
func (b *Backend) LockEnabled(context.Context) (bool, error) { return b.enabled, nil }

// SetRetention implements backend.Locker: it never shortens a retention
// and keeps the mode of an object that has one, as the S3 backend does.
func (b *Backend) SetRetention(ctx context.Context, h backend.Handle, mode backend.RetentionMode, until time.Time) error {
	if !b.enabled {
		return fmt.Errorf("setting retention of %s: bucket has no object lock", h)
	}
	if err := b.exists(ctx, h); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.state[key(h)]
	if r.Mode == backend.Compliance && mode != backend.Compliance && b.now().Before(r.Until) {
		return fmt.Errorf("setting retention of %s: access denied: compliance mode cannot be changed", h)
	}
	if r.Mode != "" && !until.After(r.Until) {
		return nil
	}
	if r.Mode != "" {
		mode = r.Mode
	}
	r.Mode, r.Until = mode, until
	b.state[key(h)] = r
	b.retentionCalls++
	return nil
}

// SetLegalHold implements backend.Locker.
func (b *Backend) SetLegalHold(ctx context.Context, h backend.Handle, on bool) error {
	if !b.enabled {
		return fmt.Errorf("setting legal hold of %s: bucket has no object lock", h)
	}
	if err := b.exists(ctx, h); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.state[key(h)]
	r.LegalHold = on
	b.state[key(h)] = r
	b.legalHoldCalls++
	return nil
}

// Retention implements backend.Locker.
func (b *Backend) Retention(ctx context.Context, h backend.Handle) (backend.Retention, error) {
	if err := b.exists(ctx, h); err != nil {
		return backend.Retention{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state[key(h)], nil
}

// Held lists the objects under legal hold.
func (b *Backend) Held() map[backend.Handle]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[backend.Handle]bool)
	for h, r := range b.state {
		if r.LegalHold {
			out[h] = true
		}
	}
	return out
}

// Calls returns how many retention and legal hold changes took effect.
func (b *Backend) Calls() (retention, legalHold int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.retentionCalls, b.legalHoldCalls
}
