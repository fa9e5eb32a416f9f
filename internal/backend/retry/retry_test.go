package retry

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
)

// statusError is a protocol error that says whether it is transient, as
// the S3 backend's errors do.
type statusError struct {
	code      int
	transient bool
}

func (e statusError) Error() string   { return fmt.Sprintf("status %d", e.code) }
func (e statusError) Transient() bool { return e.transient }

var (
	errSlowDown = statusError{503, true}
	errDenied   = statusError{403, false}
)

// flaky wraps a backend and fails the next fails[op] calls of each
// operation with err; a Save failure first consumes part of the reader, as
// a request that broke mid-upload does. Loads deliver breakAfter bytes and
// then fail, breaks times.
type flaky struct {
	backend.Backend
	mu         sync.Mutex
	err        error
	fails      map[string]int
	calls      map[string]int
	breaks     int
	breakAfter int
}

func newFlaky(err error) *flaky {
	return &flaky{Backend: mem.New(), err: err, fails: map[string]int{}, calls: map[string]int{}}
}

func (f *flaky) fail(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.fails[op] > 0 {
		f.fails[op]--
		return f.err
	}
	return nil
}

func (f *flaky) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	if err := f.fail("save"); err != nil {
		io.CopyN(io.Discard, rd, 10)
		return err
	}
	return f.Backend.Save(ctx, h, rd, size)
}

func (f *flaky) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	if err := f.fail("load"); err != nil {
		return nil, err
	}
	rc, err := f.Backend.Load(ctx, h, offset, length)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.breaks > 0 {
		f.breaks--
		return &breakingReader{rc: rc, left: f.breakAfter, err: f.err}, nil
	}
	return rc, nil
}

func (f *flaky) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := f.fail("stat"); err != nil {
		return backend.FileInfo{}, err
	}
	return f.Backend.Stat(ctx, h)
}

// Remove removes, then fails: the reply was lost.
func (f *flaky) Remove(ctx context.Context, h backend.Handle) error {
	err := f.Backend.Remove(ctx, h)
	if ferr := f.fail("remove"); ferr != nil {
		return ferr
	}
	return err
}

// List lists two objects, then fails.
func (f *flaky) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	n := 0
	err := f.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		if n == 2 {
			if err := f.fail("list"); err != nil {
				return err
			}
		}
		n++
		return fn(fi)
	})
	return err
}

type breakingReader struct {
	rc   io.ReadCloser
	left int
	err  error
}

func (b *breakingReader) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, b.err
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= n
	return n, err
}

func (b *breakingReader) Close() error { return b.rc.Close() }

var fast = Options{Attempts: 4, Base: time.Millisecond, Max: 4 * time.Millisecond}

func data(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestSaveRetriesFromTheStartPosition(t *testing.T) {
	f := newFlaky(errSlowDown)
	f.fails["save"] = 2
	be := New(f, fast)
	d := data(1000)
	rd := bytes.NewReader(d)
	rd.Seek(100, io.SeekStart)
	h := backend.Handle{Type: backend.PackFile, Name: "p1"}
	if err := be.Save(context.Background(), h, rd, 900); err != nil {
		t.Fatalf("Save after 2 transient failures: %v", err)
	}
	if f.calls["save"] != 3 {
		t.Errorf("Save called %d times, want 3", f.calls["save"])
	}
	got := load(t, be, h, 0, 0)
	if !bytes.Equal(got, d[100:]) {
		t.Error("retried Save stored the wrong bytes: the reader was not rewound to where it started")
	}
}

func TestPermanentErrorsAreNotRetried(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(errDenied)
	be := New(f, fast)
	h := backend.Handle{Type: backend.SnapshotFile, Name: "s"}
	if err := be.Save(ctx, h, bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	f.calls["save"] = 0
	if err := be.Save(ctx, h, bytes.NewReader([]byte("y")), 1); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Save of an existing name: %v", err)
	}
	if f.calls["save"] != 1 {
		t.Errorf("fs.ErrExist was retried: %d calls", f.calls["save"])
	}
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.SnapshotFile, Name: "missing"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing object: %v", err)
	}
	if f.calls["stat"] != 1 {
		t.Errorf("fs.ErrNotExist was retried: %d calls", f.calls["stat"])
	}
	f.fails["stat"] = 1
	if _, err := be.Stat(ctx, h); !errors.Is(err, errDenied) {
		t.Errorf("Stat denied: %v", err)
	}
	if f.calls["stat"] != 2 {
		t.Errorf("access denied was retried: %d calls in all, want 2", f.calls["stat"])
	}
}

func TestGivesUpWithACount(t *testing.T) {
	f := newFlaky(errSlowDown)
	f.fails["stat"] = 100
	be := New(f, fast)
	start := time.Now()
	_, err := be.Stat(context.Background(), backend.Handle{Type: backend.IndexFile, Name: "i"})
	if !errors.Is(err, errSlowDown) {
		t.Fatalf("error %v does not wrap the last cause", err)
	}
	if f.calls["stat"] != fast.Attempts {
		t.Errorf("%d attempts, want %d", f.calls["stat"], fast.Attempts)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "giving up after 4 attempts over ") || !strings.Contains(msg, "status 503") {
		t.Errorf("final error does not say how hard it tried: %s", msg)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v with millisecond backoffs", d)
	}
	if !errors.Is(err, backend.ErrUnavailable) || IsTransient(err) {
		t.Errorf("giving up on a throttling store: errors.Is(backend.ErrUnavailable) %v, IsTransient %v; want true, false: %v",
			errors.Is(err, backend.ErrUnavailable), IsTransient(err), err)
	}
}

// Only giving up on transient errors says the storage is unavailable: a
// refusal, a missing object or a cancellation says something else
// (hostile-s3 M2: verify called a throttling store's packs damaged).
func TestOnlyGivingUpIsUnavailable(t *testing.T) {
	ctx := context.Background()
	h := backend.Handle{Type: backend.PackFile, Name: "p"}
	f := newFlaky(errDenied)
	f.fails["stat"] = 100
	if _, err := New(f, fast).Stat(ctx, h); err == nil || errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("access denied: %v, matches backend.ErrUnavailable", err)
	}
	if _, err := New(mem.New(), fast).Stat(ctx, h); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("missing object: %v, matches backend.ErrUnavailable or not fs.ErrNotExist", err)
	}
	f = newFlaky(errSlowDown)
	f.fails["stat"] = 100
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := New(f, fast).Stat(cctx, h); errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("cancelled: %v, matches backend.ErrUnavailable", err)
	}
	// A load that breaks more often than the attempts allow is
	// unavailable too, whether opening or reading gave up.
	f = newFlaky(errSlowDown)
	f.fails["load"] = 100
	if _, err := New(f, fast).Load(ctx, h, 0, 0); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("opening a load on a throttling store: %v, does not match backend.ErrUnavailable", err)
	}
}

func TestLoadResumesMidBody(t *testing.T) {
	ctx := context.Background()
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	f := newFlaky(fmt.Errorf("reading body: %w", reset))
	be := New(f, fast)
	d := data(10_000)
	h := backend.Handle{Type: backend.PackFile, Name: "big"}
	if err := be.Save(ctx, h, bytes.NewReader(d), int64(len(d))); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ off, n int64 }{{0, 0}, {500, 0}, {1000, 4000}} {
		f.breaks, f.breakAfter = 2, 1500
		f.calls["load"] = 0
		got := load(t, be, h, r.off, r.n)
		end := int64(len(d))
		if r.n > 0 {
			end = r.off + r.n
		}
		if !bytes.Equal(got, d[r.off:end]) {
			t.Errorf("Load(%d, %d) through 2 broken connections: %d bytes, wrong", r.off, r.n, len(got))
		}
		if f.calls["load"] != 3 {
			t.Errorf("Load(%d, %d): %d opens, want 3", r.off, r.n, f.calls["load"])
		}
	}

	// Breaking more often than the attempts allow ends in an error.
	f.breaks, f.breakAfter = 100, 100
	rc, err := be.Load(ctx, h, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if err == nil || !strings.Contains(err.Error(), "giving up after 4 attempts") || !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("reading through endless breaks: %v (want giving up, matching backend.ErrUnavailable)", err)
	}
}

func TestListRetriesWithoutRepeating(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(errSlowDown)
	be := New(f, fast)
	for i := range 5 {
		b := []byte(fmt.Sprint(i))
		if err := be.Save(ctx, backend.Handle{Type: backend.IndexFile, Name: fmt.Sprint("i", i)}, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	f.fails["list"] = 2
	seen := map[string]int{}
	err := be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		seen[fi.Name]++
		return nil
	})
	if err != nil {
		t.Fatalf("List after 2 failures: %v", err)
	}
	if len(seen) != 5 {
		t.Errorf("listed %d objects, want 5", len(seen))
	}
	for n, c := range seen {
		if c != 1 {
			t.Errorf("%s passed to fn %d times", n, c)
		}
	}

	// The callback's own error, even one that looks transient, ends the
	// listing at once.
	calls := 0
	err = be.List(ctx, backend.IndexFile, func(backend.FileInfo) error {
		calls++
		return errSlowDown
	})
	if !errors.Is(err, errSlowDown) || calls != 1 {
		t.Errorf("fn failing: List returned %v after %d calls, want fn's error after 1", err, calls)
	}
}

func TestRemoveWhoseReplyWasLost(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(errSlowDown)
	be := New(f, fast)
	h := backend.Handle{Type: backend.KeyFile, Name: "k"}
	if err := be.Save(ctx, h, bytes.NewReader([]byte("k")), 1); err != nil {
		t.Fatal(err)
	}
	f.fails["remove"] = 1
	if err := be.Remove(ctx, h); err != nil {
		t.Errorf("Remove that succeeded but failed to reply: %v", err)
	}
	if err := be.Remove(ctx, h); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove of a missing object: %v", err)
	}
}

func TestCancelStopsWaiting(t *testing.T) {
	f := newFlaky(errSlowDown)
	f.fails["stat"] = 100
	be := New(f, Options{Attempts: 10, Base: time.Hour, Max: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := be.Stat(ctx, backend.Handle{Type: backend.IndexFile, Name: "i"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stat cancelled while waiting: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancellation took %v", d)
	}
}

func TestBackoff(t *testing.T) {
	b := New(mem.New(), Options{}).(*Backend)
	var worst time.Duration
	for n := 1; n < b.o.Attempts; n++ {
		ceil := min(b.o.Max, b.o.Base<<(n-1))
		worst += ceil
		var sum time.Duration
		for range 200 {
			w := b.backoff(n)
			if w < 0 || w > ceil {
				t.Fatalf("backoff(%d) = %v, outside [0, %v]", n, w, ceil)
			}
			sum += w
		}
		if avg := sum / 200; avg < ceil/4 || avg > ceil*3/4 {
			t.Errorf("backoff(%d) averages %v, want about %v (full jitter)", n, avg, ceil/2)
		}
	}
	if worst > 30*time.Second {
		t.Errorf("default options may wait %v in all, want at most 30 s", worst)
	}
	if b.backoff(100) > b.o.Max {
		t.Error("backoff overflows for large n")
	}
}

func TestIsTransient(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("x: %w", fs.ErrExist), false},
		{fmt.Errorf("x: %w", fs.ErrNotExist), false},
		{context.Canceled, false},
		{errors.New("bad request"), false},
		{io.ErrUnexpectedEOF, false}, // a short object, unless the backend says otherwise
		{errDenied, false},
		{fmt.Errorf("put: %w", errSlowDown), true},
		{fmt.Errorf("put: %w", refused), true},
		{os.NewSyscallError("write", syscall.EPIPE), true},
		{timeoutError{}, true},
		// A backend's own verdict wins over the network error it wraps.
		{fmt.Errorf("%w", permanent{refused}), false},
		// An answer that cannot be parsed is not retried, even when the
		// backend (which cannot tell it from a cut connection) calls it
		// transient: the server answers the same way every time.
		{statusWrap{fmt.Errorf("reading the retention: %w", xml.UnmarshalError("expected element type <Retention> but have <ObjectLockRetention>"))}, false},
		{statusWrap{&xml.SyntaxError{Msg: "unexpected EOF", Line: 1}}, false},
		{statusWrap{&json.SyntaxError{}}, false},
		{statusWrap{refused}, true},
	} {
		if got := IsTransient(c.err); got != c.want {
			t.Errorf("IsTransient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// statusWrap is a backend error that calls itself transient.
type statusWrap struct{ err error }

func (e statusWrap) Error() string   { return e.err.Error() }
func (e statusWrap) Unwrap() error   { return e.err }
func (e statusWrap) Transient() bool { return true }

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// locker is a backend that also implements backend.Locker and
// SetDefaultRetention.
type locker struct {
	*flaky
	mode backend.RetentionMode
}

func (l *locker) LockEnabled(context.Context) (bool, error) {
	if err := l.fail("lock"); err != nil {
		return false, err
	}
	return true, nil
}
func (l *locker) SetRetention(context.Context, backend.Handle, backend.RetentionMode, time.Time) error {
	return nil
}
func (l *locker) SetLegalHold(context.Context, backend.Handle, bool) error { return nil }
func (l *locker) Retention(context.Context, backend.Handle) (backend.Retention, error) {
	return backend.Retention{}, nil
}
func (l *locker) SetDefaultRetention(m backend.RetentionMode, _ time.Duration) { l.mode = m }

func TestOptionalInterfacesPassThrough(t *testing.T) {
	if _, ok := New(mem.New(), fast).(backend.Locker); ok {
		t.Error("wrapping a backend without Locker yields a Locker")
	}
	l := &locker{flaky: newFlaky(errSlowDown)}
	be := New(l, fast)
	bl, ok := be.(backend.Locker)
	if !ok {
		t.Fatal("wrapping a Locker hides it")
	}
	l.fails["lock"] = 2
	if on, err := bl.LockEnabled(context.Background()); err != nil || !on {
		t.Errorf("LockEnabled after 2 transient failures: %v, %v", on, err)
	}
	d, ok := be.(interface {
		SetDefaultRetention(backend.RetentionMode, time.Duration)
	})
	if !ok {
		t.Fatal("wrapping hides SetDefaultRetention")
	}
	d.SetDefaultRetention(backend.Compliance, time.Hour)
	if l.mode != backend.Compliance {
		t.Error("SetDefaultRetention did not reach the backend")
	}
	if be.(interface{ Unwrap() backend.Backend }).Unwrap() != l {
		t.Error("Unwrap does not return the wrapped backend")
	}
}

func load(t *testing.T, be backend.Backend, h backend.Handle, off, n int64) []byte {
	t.Helper()
	rc, err := be.Load(context.Background(), h, off, n)
	if err != nil {
		t.Fatalf("Load %s: %v", h, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", h, err)
	}
	return b
}

// flakyClock is a flaky store that tells its time (backend.Clock), failing
// as flaky does under the operation "time".
type flakyClock struct {
	*flaky
	at time.Time
}

func (c *flakyClock) Unwrap() backend.Backend { return c.flaky }

func (c *flakyClock) StoreTime(context.Context) (time.Time, error) {
	if err := c.fail("time"); err != nil {
		return time.Time{}, err
	}
	return c.at, nil
}

// TestStoreTimeRetried: the store's time, which a writer reads once its
// snapshot is ready to save (internal/commit), is retried like every
// other request: a brief outage there must not fail a long backup. Over
// a store that does not tell its time, the answer is the zero time.
func TestStoreTimeRetried(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	f := &flakyClock{flaky: newFlaky(errSlowDown), at: at}
	f.fails["time"] = 2
	c, ok := backend.As[backend.Clock](New(f, fast))
	if !ok {
		t.Fatal("a retried Clock is no backend.Clock")
	}
	if got, err := c.StoreTime(ctx); err != nil || !got.Equal(at) {
		t.Fatalf("StoreTime after 2 transient failures: %v, %v; want %v", got, err, at)
	}
	if f.calls["time"] != 3 {
		t.Errorf("StoreTime called %d times, want 3", f.calls["time"])
	}
	f.fails["time"] = 1
	f.err = errDenied
	if _, err := c.StoreTime(ctx); !errors.Is(err, errDenied) || f.calls["time"] != 4 {
		t.Errorf("a permanent error: %v after %d calls, want it at once", err, f.calls["time"])
	}
	if c, ok := backend.As[backend.Clock](New(newFlaky(errSlowDown), fast)); ok {
		if got, err := c.StoreTime(ctx); err != nil || !got.IsZero() {
			t.Errorf("StoreTime over a store without a clock: %v, %v; want the zero time", got, err)
		}
	}
}

// slow is a backend whose operations each take delay before they start,
// as requests to a store that does not answer until a timeout.
type slow struct {
	*flaky
	delay time.Duration
}

func (s slow) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	time.Sleep(s.delay)
	return s.flaky.Stat(ctx, h)
}

func (s slow) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	time.Sleep(s.delay)
	return s.flaky.Save(ctx, h, rd, size)
}

func (s slow) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	time.Sleep(s.delay)
	return s.flaky.Load(ctx, h, offset, length)
}

// Attempts that each wait out their own timeout give up once the
// operation has gone Patience without progress, however many attempts
// are left; attempts that make progress (data taken, bytes read) are not
// cut short by it.
func TestPatience(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const delay, patience = 100 * time.Millisecond, 350 * time.Millisecond
	o := Options{Attempts: 50, Base: time.Millisecond, Max: time.Millisecond, Patience: patience}

	f := newFlaky(errSlowDown)
	f.fails["stat"] = 1000
	start := time.Now()
	_, err := New(slow{f, delay}, o).Stat(ctx, backend.Handle{Type: backend.SnapshotFile, Name: "x"})
	if err == nil || !strings.Contains(err.Error(), "giving up after") {
		t.Errorf("Stat of a silent store: %v, want giving up", err)
	}
	if n := f.calls["stat"]; n > 5 || time.Since(start) > 10*delay {
		t.Errorf("Stat of a silent store: %d attempts over %v, want it to stop after about %v", n, time.Since(start), patience)
	}

	// A store that takes each upload and then says nothing: reading the
	// data again on each attempt is not progress of the operation.
	var saves int
	swallow := saveFunc(func(rd io.ReadSeeker) error {
		saves++
		io.Copy(io.Discard, rd)
		time.Sleep(delay)
		return errSlowDown
	})
	start = time.Now()
	err = New(swallow, o).Save(ctx, backend.Handle{Type: backend.SnapshotFile, Name: "s"}, bytes.NewReader([]byte("wal")), 3)
	if err == nil || saves > 5 || time.Since(start) > 10*delay {
		t.Errorf("Save to a store that swallows uploads: %v after %d attempts over %v, want it to stop after about %v", err, saves, time.Since(start), patience)
	}

	o.Attempts = 10
	f = newFlaky(errSlowDown)
	f.fails["save"] = 8 // each failed attempt takes 10 bytes first
	h := backend.Handle{Type: backend.SnapshotFile, Name: "y"}
	data := bytes.Repeat([]byte("d"), 1000)
	if err := New(slow{f, delay}, o).Save(ctx, h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Errorf("Save whose attempts take data, over %v: %v", 9*delay, err)
	}

	f.breaks, f.breakAfter = 8, 10 // each attempt delivers 10 bytes
	rc, err := New(slow{f, delay}, o).Load(ctx, h, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("Load whose attempts deliver bytes, over %v: %d bytes, %v", 9*delay, len(got), err)
	}
}

// saveFunc is a backend whose Save is the function.
type saveFunc func(rd io.ReadSeeker) error

func (f saveFunc) Save(_ context.Context, _ backend.Handle, rd io.ReadSeeker, _ int64) error {
	return f(rd)
}

func (saveFunc) Location() string { return "swallow" }
func (saveFunc) Stat(context.Context, backend.Handle) (backend.FileInfo, error) {
	return backend.FileInfo{}, errors.ErrUnsupported
}
func (saveFunc) Load(context.Context, backend.Handle, int64, int64) (io.ReadCloser, error) {
	return nil, errors.ErrUnsupported
}
func (saveFunc) Remove(context.Context, backend.Handle) error { return errors.ErrUnsupported }
func (saveFunc) List(context.Context, backend.FileType, func(backend.FileInfo) error) error {
	return errors.ErrUnsupported
}
func (saveFunc) Close() error { return nil }
