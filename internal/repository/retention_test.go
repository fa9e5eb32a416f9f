package repository

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/retention/locktest"
)

func TestParseRetention(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"7y", 2557 * Day},
		{"1y", 366 * Day},
		{"4y", 1461 * Day},
		{"90d", 90 * Day},
		{"36h", 36 * time.Hour},
		{"30m", 30 * time.Minute},
		{"5s", 5 * time.Second},
		{"1y30d", 396 * Day},
		{"1d12h", 36 * time.Hour},
		{"100y", 36525 * Day},
	} {
		got, err := ParseRetention(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRetention(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "7", "y", "7w", "-1d", "0d", "1.5y", "101y", "40000d", "99999999999999999999s", "1d ", "d7"} {
		if d, err := ParseRetention(bad); err == nil {
			t.Errorf("ParseRetention(%q) = %v, want an error", bad, d)
		}
	}
}

func TestFormatRetention(t *testing.T) {
	for d, want := range map[time.Duration]string{2557 * Day: "2557d", 36 * time.Hour: "1d12h", 5 * time.Second: "5s", 0: "0s"} {
		if got := FormatRetention(d); got != want {
			t.Errorf("FormatRetention(%v) = %q, want %q", d, got, want)
		}
	}
}

func FuzzParseRetention(f *testing.F) {
	for _, s := range []string{"7y", "1y30d", "5s", "", "99999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseRetention(s)
		if err != nil {
			return
		}
		if d <= 0 || d > maxRetention+366*Day*100 {
			t.Fatalf("ParseRetention(%q) = %v out of range", s, d)
		}
		if back, err := ParseRetention(FormatRetention(d)); err != nil || back != d {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, d, FormatRetention(d), back, err)
		}
	})
}

func TestNewObjectLock(t *testing.T) {
	o, err := NewObjectLock("COMPLIANCE", "7y")
	if err != nil || o.Mode != LockCompliance || o.MinRetention != 2557*Day {
		t.Fatalf("NewObjectLock: %+v, %v", o, err)
	}
	if _, err := NewObjectLock("legal", "7y"); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := NewObjectLock("governance", ""); err == nil {
		t.Error("missing min retention accepted")
	}
}

func lockedInit(t *testing.T, be backend.Backend, mode string, min time.Duration) (*Repository, error) {
	t.Helper()
	return Init(context.Background(), be, pass, InitOptions{Options: testOptions(), PackSize: 1 << 20,
		Chunker: ChunkerSizes{Min: 64 << 10, Avg: 128 << 10, Max: 512 << 10}, ObjectLock: &ObjectLock{Mode: mode, MinRetention: min}})
}

func TestInitRefusesStorageWithoutObjectLock(t *testing.T) {
	ctx := context.Background()
	plain := mem.New()
	if _, err := lockedInit(t, plain, LockCompliance, Day); !errors.Is(err, ErrNoObjectLock) {
		t.Errorf("init on a store without Locker: %v", err)
	}
	off := locktest.New(false)
	_, err := lockedInit(t, off, LockCompliance, Day)
	if !errors.Is(err, ErrNoObjectLock) || !strings.Contains(err.Error(), "has no Object Lock") || !strings.Contains(err.Error(), "object-lock-enabled-for-bucket") {
		t.Errorf("init on a bucket without Object Lock: %v", err)
	}
	// Nothing was written: init can be run again on a proper bucket.
	for _, be := range []backend.Backend{plain, off} {
		n := 0
		be.List(ctx, backend.KeyFile, func(backend.FileInfo) error { n++; return nil })
		if _, err := be.Stat(ctx, configHandle); err == nil || n > 0 {
			t.Errorf("refused init left objects behind (%d key slots)", n)
		}
	}
}

func TestObjectLockRetainsEveryObject(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	if _, err := lockedInit(t, be, LockCompliance, Day); err != nil {
		t.Fatal(err)
	}
	// Reopened, the policy is applied again to everything written after.
	r := reopen(t, be)
	if _, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(1, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	min := time.Now().Add(Day - time.Minute)
	n := 0
	for _, ft := range []backend.FileType{backend.ConfigFile, backend.KeyFile, backend.PackFile, backend.IndexFile} {
		be.List(ctx, ft, func(fi backend.FileInfo) error {
			h := backend.Handle{Type: ft, Name: fi.Name}
			ret, err := be.Retention(ctx, h)
			if err != nil || ret.Mode != backend.Compliance || ret.Until.Before(min) {
				t.Errorf("%s: retention %+v, %v", h, ret, err)
			}
			if err := be.Remove(ctx, h); err == nil {
				t.Errorf("%s: removed under retention", h)
			}
			if err := r.CheckDeletable(ctx, h); !errors.Is(err, ErrRetained) || !strings.Contains(err.Error(), "until") {
				t.Errorf("%s: CheckDeletable = %v", h, err)
			}
			n++
			return nil
		})
	}
	if n < 4 {
		t.Fatalf("only %d objects checked", n)
	}
}

func TestExtendRetention(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r, err := lockedInit(t, be, LockGovernance, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var hs []backend.Handle
	for i := range 20 {
		h := backend.Handle{Type: backend.SnapshotFile, Name: strings.Repeat("0", 60) + string(rune('a'+i%6)) + string(rune('a'+i/6))}
		if err := be.Save(ctx, h, bytes.NewReader([]byte{byte(i)}), 1); err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	// Half of them already reach far.
	far := time.Now().Add(48 * time.Hour)
	for _, h := range hs[:10] {
		if err := be.SetRetention(ctx, h, backend.Governance, far); err != nil {
			t.Fatal(err)
		}
	}
	until := time.Now().Add(24 * time.Hour)
	n, err := r.ExtendRetention(ctx, hs, until)
	if err != nil || n != 10 {
		t.Fatalf("ExtendRetention: %d extended, %v; want 10", n, err)
	}
	for i, h := range hs {
		ret, _ := be.Retention(ctx, h)
		switch {
		case i < 10 && !ret.Until.Equal(far):
			t.Errorf("%s: retention moved from %v to %v", h, far, ret.Until)
		case i >= 10 && (ret.Until.Before(until) || ret.Until.After(until.Add(retentionMargin(time.Hour)))):
			t.Errorf("%s: retention %v, want %v plus at most the margin", h, ret.Until, until)
		}
	}
	// Again: everything is long enough now.
	if n, err := r.ExtendRetention(ctx, hs, until); err != nil || n != 0 {
		t.Errorf("second ExtendRetention: %d, %v", n, err)
	}
	// A date in the past changes nothing.
	if n, err := r.ExtendRetention(ctx, hs, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("ExtendRetention into the past: %d, %v", n, err)
	}
	// A missing object is an error naming it.
	_, err = r.ExtendRetention(ctx, []backend.Handle{{Type: backend.PackFile, Name: "nope"}}, until.Add(time.Hour))
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing object: %v", err)
	}
}

func TestExtendRetentionNeedsPolicy(t *testing.T) {
	r, _ := newRepo(t)
	if _, err := r.ExtendRetention(context.Background(), nil, time.Now().Add(time.Hour)); err == nil {
		t.Error("ExtendRetention without an Object Lock policy succeeded")
	}
}

func TestCanDelete(t *testing.T) {
	ctx := context.Background()
	r, _ := newRepo(t)
	if ok, _, err := r.CanDelete(ctx, configHandle); !ok || err != nil {
		t.Errorf("plain store: CanDelete = %v, %v", ok, err)
	}
	lb := locktest.New(true)
	lr, err := lockedInit(t, lb, LockGovernance, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ok, until, err := lr.CanDelete(ctx, configHandle)
	if ok || err != nil || time.Until(until) <= 0 {
		t.Fatalf("fresh config: CanDelete = %v, %v, %v", ok, until, err)
	}
	if err := lb.SetLegalHold(ctx, configHandle, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(until) + 10*time.Millisecond)
	if ok, _, _ := lr.CanDelete(ctx, configHandle); ok {
		t.Error("held object deletable after its retention ended")
	}
	if err := lr.CheckDeletable(ctx, configHandle); err == nil || !strings.Contains(err.Error(), "legal hold") {
		t.Errorf("CheckDeletable of held object: %v", err)
	}
	lb.SetLegalHold(ctx, configHandle, false)
	if ok, _, err := lr.CanDelete(ctx, configHandle); !ok || err != nil {
		t.Errorf("released, expired object: CanDelete = %v, %v", ok, err)
	}
	if err := lr.CheckDeletable(ctx, configHandle); err != nil {
		t.Errorf("CheckDeletable: %v", err)
	}
}
