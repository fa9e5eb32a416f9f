package prune

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// lockFaults fails operations on lock records as a test sets it, as a
// storage that went away or hiccups does: saves while failSaves is set,
// removals while failRemoves is set, and the next removal once
// removeOnce is set (which that removal clears).
type lockFaults struct {
	backend.Backend
	failSaves, failRemoves, removeOnce atomic.Bool
}

var errLockFault = errors.New("dial tcp: connection refused")

func (b *lockFaults) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	if h.Type == backend.LockFile && b.failSaves.Load() {
		return errLockFault
	}
	return b.Backend.Save(ctx, h, rd, size)
}

func (b *lockFaults) Remove(ctx context.Context, h backend.Handle) error {
	if h.Type == backend.LockFile && (b.failRemoves.Load() || b.removeOnce.CompareAndSwap(true, false)) {
		return errLockFault
	}
	return b.Backend.Remove(ctx, h)
}

// lockPruner is a pruner with options o of a new repository on be, for
// the lock's own tests.
func lockPruner(t *testing.T, be backend.Backend, o Options) *pruner {
	t.Helper()
	return &pruner{repo: repotest.New(t, repotest.Backend(be)), o: o, log: slog.New(slog.DiscardHandler), rep: &Report{}}
}

// TestLockRefresh: a running prune writes a new lock record every refresh
// and removes the one before; when it cannot, its context is cancelled,
// naming why, so that it stops before its record expires.
func TestLockRefresh(t *testing.T) {
	ctx := context.Background()
	be := &lockFaults{Backend: mem.New()}
	p := lockPruner(t, be, Options{})
	count := func() int {
		n := 0
		be.List(ctx, backend.LockFile, func(backend.FileInfo) error { n++; return nil })
		return n
	}
	rctx, l, err := p.lock(ctx, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	first := l.ids[0]
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		moved := l.ids[0] != first
		l.mu.Unlock()
		if moved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new lock record written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := count(); n > 2 {
		t.Errorf("%d lock records while refreshing, want the newest (and at most the one being replaced)", n)
	}
	be.failSaves.Store(true)
	select {
	case <-rctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the prune's context was not cancelled when its lock record could not be renewed")
	}
	if cause := context.Cause(rctx); cause == nil || !strings.Contains(cause.Error(), "renewing the prune's lock record") {
		t.Errorf("cause %v", cause)
	}
	l.unlock(ctx)
	if n := count(); n != 0 {
		t.Errorf("%d lock records after unlock", n)
	}
}

// TestUnlockStorageGone: a prune that can neither remove its lock record
// nor record its end, the storage gone, says that it left the record and
// until when it stops other hosts' prunes (it used to say nothing unless
// logging at info level).
func TestUnlockStorageGone(t *testing.T) {
	ctx := context.Background()
	be := &lockFaults{Backend: mem.New()}
	p := lockPruner(t, be, Options{})
	_, l, err := p.lock(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rid := l.ids[0]
	be.failSaves.Store(true)
	be.failRemoves.Store(true)
	l.unlock(ctx)
	w := strings.Join(p.rep.Warnings, "\n")
	if !strings.Contains(w, rid.String()) || !strings.Contains(w, "another host") {
		t.Errorf("warnings %q: want the record left named, and what it means for another host's prune", p.rep.Warnings)
	}
}

// TestLockRecordString: a record without a user (user.Current failed: a
// container's UID without a passwd entry) names its host alone, not
// "@host".
func TestLockRecordString(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		rec  lockRecord
		want string
	}{
		{lockRecord{Op: "prune", Host: "h", User: "u", PID: 7, Time: at}, "prune by u@h (pid 7), started 2026-12-06T10:00:00Z"},
		{lockRecord{Op: "prune", Host: "h", PID: 7, Time: at}, "prune by h (pid 7), started 2026-12-06T10:00:00Z"},
	} {
		if got := c.rec.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.rec, got, c.want)
		}
	}
}

// TestLockRefreshRemoveFails: a record a refresh could not remove is
// removed at the prune's end; it used to be forgotten and stop other
// hosts' prunes for up to its lease after the prune ended.
func TestLockRefreshRemoveFails(t *testing.T) {
	ctx := context.Background()
	be := &lockFaults{Backend: mem.New()}
	be.removeOnce.Store(true)
	p := lockPruner(t, be, Options{})
	_, l, err := p.lock(ctx, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for be.removeOnce.Load() {
		if time.Now().After(deadline) {
			t.Fatal("no refresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.unlock(ctx)
	var left []string
	be.List(ctx, backend.LockFile, func(fi backend.FileInfo) error { left = append(left, fi.Name); return nil })
	var released int
	for _, name := range left {
		rid, _ := id.Parse(name)
		var rec lockRecord
		if err := p.repo.LoadObject(ctx, backend.LockFile, rid, &rec); err == nil && rec.Released {
			released++
		}
	}
	if len(left) != released {
		t.Errorf("%d lock records left after the prune, %d of them its release: the one the refresh could not remove counts as a running prune", len(left), released)
	}
}

// TestLockLapsed: a prune that did not run for longer than its lease
// (SIGSTOP, a suspended VM) finds on waking that its record may have
// expired, and another prune started, and stops; it used to write a new
// record and go on deleting beside the other prune.
func TestLockLapsed(t *testing.T) {
	ctx := context.Background()
	var skip atomic.Int64
	p := lockPruner(t, mem.New(), Options{Now: func() time.Time { return time.Now().Add(time.Duration(skip.Load())) }})
	rctx, l, err := p.lock(ctx, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer l.unlock(ctx)
	time.Sleep(50 * time.Millisecond)
	if rctx.Err() != nil {
		t.Fatalf("cancelled while refreshing in time: %v", context.Cause(rctx))
	}
	skip.Store(int64(40 * time.Minute))
	select {
	case <-rctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a prune whose lock lapsed goes on")
	}
	if cause := context.Cause(rctx); cause == nil || !strings.Contains(cause.Error(), "another prune") {
		t.Errorf("cause %v, want it to say another prune may have started", cause)
	}
}

// TestLockFresh: a prune whose record was written longer ago than its
// lease less the skew, by the wall clock (it was stopped, or its machine
// suspended), may no longer delete: another prune may have started.
func TestLockFresh(t *testing.T) {
	ctx := context.Background()
	var skip time.Duration
	p := lockPruner(t, mem.New(), Options{Now: func() time.Time { return time.Now().Add(skip) }})
	_, l, err := p.lock(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer l.unlock(ctx)
	p.held = l
	if err := p.lockFresh(); err != nil {
		t.Fatalf("just locked: %v", err)
	}
	skip = lockLease - lockSkew + time.Second
	if err := p.lockFresh(); err == nil || !strings.Contains(err.Error(), "not renewed in time") {
		t.Fatalf("after %s without a refresh: %v", skip, err)
	}
}

// shiftedTimes lists objects with their stored times moved by shift: a
// store whose clock differs from this host's.
type shiftedTimes struct {
	backend.Backend
	shift time.Duration
}

func (b *shiftedTimes) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	return b.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		fi.ModTime = fi.ModTime.Add(b.shift)
		return fn(fi)
	})
}

// TestLockClock: a prune whose host's clock is further from the store's
// than the skew refuses to run, naming how far and which way; within the
// skew it runs.
func TestLockClock(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		shift time.Duration
		want  string // "" to run
	}{
		{0, ""},
		{4 * time.Minute, ""},
		{-4 * time.Minute, ""},
		{10 * time.Minute, "behind the storage's"},
		{-10 * time.Minute, "ahead of the storage's"},
	} {
		be := &shiftedTimes{Backend: mem.New(), shift: c.shift}
		p := lockPruner(t, be, Options{})
		_, l, err := p.lock(ctx, time.Hour)
		if c.want == "" {
			if err != nil {
				t.Errorf("store's clock %s off: %v", c.shift, err)
				continue
			}
			l.unlock(ctx)
			continue
		}
		if !errors.Is(err, ErrClock) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "NTP") {
			t.Errorf("store's clock %s off: %v, want ErrClock saying %q", c.shift, err, c.want)
		}
		n := 0
		be.List(ctx, backend.LockFile, func(backend.FileInfo) error { n++; return nil })
		if n != 0 {
			t.Errorf("store's clock %s off: %d lock records left by the refused prune", c.shift, n)
		}
	}
}
