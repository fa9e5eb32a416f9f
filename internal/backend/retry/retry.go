// Package retry wraps a backend so that operations failing with transient
// errors (server errors, throttling, timeouts, dropped connections) are
// repeated with exponential backoff and full jitter, a bounded number of
// times, and then fail with an error that says how hard it tried.
//
// Errors that repeating cannot fix (the object exists or is missing,
// access denied, a bad request) are returned at once.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
)

// Options bound the retries. Zero fields take the defaults, which give up
// after 6 attempts, with at most 25 s of waiting between them, or once
// the attempts have spent a minute in all without progress, whichever
// comes first.
type Options struct {
	Attempts int           // tries in total, including the first (default 6)
	Base     time.Duration // the first wait is up to Base (default 1 s)
	Max      time.Duration // no wait is longer than Max (default 10 s)
	// Patience bounds the time the attempts of an operation may spend,
	// in all, without progress: each failed attempt adds the time from
	// its last progress (its start, data taken from a Save's reader, a
	// byte of a Load, an object of a List) to its failure, and no
	// attempt starts once the sum reaches Patience (default 1 min).
	// Attempts that each wait out their timeout on a silent store do not
	// add up beyond it; attempts that fail fast, and a large transfer
	// that moved until it broke, are retried as usual.
	Patience time.Duration
	Logger   *slog.Logger // retries are logged at warning level (default: discarded)
}

func (o Options) withDefaults() Options {
	if o.Attempts <= 0 {
		o.Attempts = 6
	}
	if o.Base <= 0 {
		o.Base = time.Second
	}
	if o.Max <= 0 {
		o.Max = 10 * time.Second
	}
	if o.Max < o.Base {
		o.Max = o.Base
	}
	if o.Patience <= 0 {
		o.Patience = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Backend is a backend with retries. It also implements backend.Locker
// (retried as well) when the wrapped backend does, see New; and
// backend.Clock, see StoreTime.
type Backend struct {
	be backend.Backend
	o  Options
}

// New wraps be. The result implements backend.Locker, and
// SetDefaultRetention, exactly when be does, so callers discover them with
// type assertions as they would on be.
func New(be backend.Backend, o Options) backend.Backend {
	b := &Backend{be: be, o: o.withDefaults()}
	l, ok := be.(backend.Locker)
	if !ok {
		return b
	}
	lb := &lockingBackend{Backend: b, l: l}
	if d, ok := be.(retentionDefaulter); ok {
		return &defaultingBackend{lockingBackend: lb, d: d}
	}
	return lb
}

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() backend.Backend { return b.be }

// backoff returns the wait before retry number n (1 for the first retry):
// full jitter, uniformly up to min(Max, Base*2^(n-1)), so many clients
// failing together do not retry in step.
func (b *Backend) backoff(n int) time.Duration {
	ceil := b.o.Max
	if n-1 < 32 {
		if c := b.o.Base << (n - 1); c > 0 && c < ceil {
			ceil = c
		}
	}
	return rand.N(ceil + 1)
}

// budget counts the attempts of one operation, when it began, when it
// last made progress, and the time its failed attempts spent without.
type budget struct {
	start    time.Time
	attempts int
	progress atomic.Int64 // Unix nanoseconds; a Save's data is read in the HTTP transport's goroutine
	silent   time.Duration
}

func newBudget() *budget {
	bg := &budget{start: time.Now()}
	bg.moved()
	return bg
}

// moved records progress.
func (bg *budget) moved() { bg.progress.Store(time.Now().UnixNano()) }

// still is how long the operation has gone without progress.
func (bg *budget) still() time.Duration { return time.Since(time.Unix(0, bg.progress.Load())) }

// do runs op until it succeeds, fails permanently, the attempts or the
// patience run out, or ctx ends. what names the operation for messages.
func (b *Backend) do(ctx context.Context, what string, op func() error) error {
	return b.run(ctx, what, newBudget(), op)
}

// run is do drawing on an existing budget.
func (b *Backend) run(ctx context.Context, what string, bg *budget, op func() error) error {
	for {
		bg.attempts++
		bg.moved()
		err := op()
		if err == nil || !IsTransient(err) || ctx.Err() != nil {
			return err
		}
		if err := b.pause(ctx, what, bg, err); err != nil {
			return err
		}
	}
}

// pause waits before the next attempt after err, or returns the final
// error when the budget is spent or ctx ends.
func (b *Backend) pause(ctx context.Context, what string, bg *budget, err error) error {
	bg.silent += bg.still()
	if bg.attempts >= b.o.Attempts || bg.silent >= b.o.Patience {
		return &GaveUpError{Attempts: bg.attempts, Over: time.Since(bg.start).Round(time.Millisecond), Err: err}
	}
	wait := b.backoff(bg.attempts)
	b.o.Logger.Warn("storage operation failed, retrying", "op", what, "attempt", bg.attempts, "of", b.o.Attempts, "wait", wait.Round(time.Millisecond), "err", err)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s: %w (while waiting to retry after: %v)", what, ctx.Err(), err)
	case <-t.C:
		return nil
	}
}

// GaveUpError is the error of an operation whose attempts all failed
// with transient errors (see IsTransient) until the attempts or the
// patience ran out: the storage did not answer, or only with failures
// that may pass. It matches backend.ErrUnavailable (errors.Is) as well as
// the last attempt's error, so that callers tell an outage from damage
// without knowing this package.
type GaveUpError struct {
	Attempts int
	Over     time.Duration // from the first attempt to giving up
	Err      error         // the last attempt's; it names the operation and the store
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("giving up after %d attempts over %v: %v", e.Attempts, e.Over, e.Err)
}

// Unwrap returns backend.ErrUnavailable and the last attempt's error.
func (e *GaveUpError) Unwrap() []error { return []error{backend.ErrUnavailable, e.Err} }

// Transient reports false: the retries are spent, and a caller that
// repeats operations on transient errors must not start them again.
func (e *GaveUpError) Transient() bool { return false }

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.be.Location() }

// Save implements backend.Backend. Before each retry rd is put back where
// it was when Save was called.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	start, err := rd.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("saving %s: finding the reader's position: %w", h, err)
	}
	first := true
	bg := newBudget()
	prd := watchProgress(rd, bg)
	return b.run(ctx, "saving "+h.String(), bg, func() error {
		if !first {
			if _, err := rd.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("saving %s: rewinding the data to retry: %w", h, err)
			}
		}
		first = false
		return b.be.Save(ctx, h, prd, size)
	})
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	var fi backend.FileInfo
	err := b.do(ctx, "stat "+h.String(), func() (err error) {
		fi, err = b.be.Stat(ctx, h)
		return err
	})
	return fi, err
}

// Remove implements backend.Backend. When an attempt failed in a way that
// may have removed the object anyway (the reply was lost), a later
// "does not exist" counts as success.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	retried := false
	return b.do(ctx, "removing "+h.String(), func() error {
		err := b.be.Remove(ctx, h)
		if retried && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		retried = true
		return err
	})
}

// List implements backend.Backend. A listing that fails part-way is
// repeated, and objects already passed to fn are not passed again.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	seen := make(map[string]bool)
	var fnErr error
	bg := newBudget()
	err := b.run(ctx, "listing "+string(t), bg, func() error {
		err := b.be.List(ctx, t, func(fi backend.FileInfo) error {
			bg.moved()
			if seen[fi.Name] {
				return nil
			}
			seen[fi.Name] = true
			if err := fn(fi); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if fnErr != nil {
			return permanent{fnErr}
		}
		return err
	})
	if fnErr != nil {
		return fnErr // the caller's own error, never retried
	}
	return err
}

// progressReader records each read of a Save's data as progress: the
// store takes it.
type progressReader struct {
	io.ReadSeeker
	bg *budget
}

func (r *progressReader) Read(p []byte) (int, error) {
	n, err := r.ReadSeeker.Read(p)
	if n > 0 {
		r.bg.moved()
	}
	return n, err
}

// progressReaderAt is progressReader for a reader with ReadAt, which
// backends may use (the S3 backend reads upload parts as sections).
type progressReaderAt struct {
	progressReader
	ra io.ReaderAt
}

func (r *progressReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.ra.ReadAt(p, off)
	if n > 0 {
		r.bg.moved()
	}
	return n, err
}

// watchProgress returns rd recording its reads in bg.
func watchProgress(rd io.ReadSeeker, bg *budget) io.ReadSeeker {
	pr := progressReader{ReadSeeker: rd, bg: bg}
	if ra, ok := rd.(io.ReaderAt); ok {
		return &progressReaderAt{progressReader: pr, ra: ra}
	}
	return &pr
}

// permanent stops the retries with an error that might look transient.
type permanent struct{ error }

func (permanent) Transient() bool { return false }
func (p permanent) Unwrap() error { return p.error }

// StoreTime implements backend.Clock, retried as every request is, where
// the wrapped backend tells its time; elsewhere it returns the zero time
// (the store does not say). Without it a writer would reach the store's
// clock past the retries (backend.As unwraps), and one failed HEAD at the
// end of a long backup would fail its snapshot.
func (b *Backend) StoreTime(ctx context.Context) (time.Time, error) {
	c, ok := backend.As[backend.Clock](b.be)
	if !ok {
		return time.Time{}, nil
	}
	var t time.Time
	err := b.do(ctx, "reading the storage's time", func() (err error) {
		t, err = c.StoreTime(ctx)
		return err
	})
	return t, err
}

// Close implements backend.Backend.
func (b *Backend) Close() error { return b.be.Close() }
