package repository

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/retention/locktest"
)

// inFlight is an Object Lock store that records how many retention
// requests it serves at once.
type inFlight struct {
	*locktest.Backend
	mu       sync.Mutex
	cur, max int
}

func (b *inFlight) Retention(ctx context.Context, h backend.Handle) (backend.Retention, error) {
	b.mu.Lock()
	b.cur++
	b.max = max(b.max, b.cur)
	b.mu.Unlock()
	time.Sleep(10 * time.Millisecond)
	defer func() { b.mu.Lock(); b.cur--; b.mu.Unlock() }()
	return b.Backend.Retention(ctx, h)
}

// TestRetentionRequestsOption: Options.RetentionRequests bounds the
// retention requests in flight, DefaultRetentionRequests without it.
func TestRetentionRequestsOption(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ set, want int }{{3, 3}, {0, DefaultRetentionRequests}} {
		be := &inFlight{Backend: locktest.New(true)}
		o := testOptions()
		o.RetentionRequests = c.set
		r, err := Init(ctx, be, pass, InitOptions{Options: o, ObjectLock: &ObjectLock{Mode: LockGovernance, MinRetention: time.Hour}})
		if err != nil {
			t.Fatal(err)
		}
		var hs []backend.Handle
		for i := range 3 * DefaultRetentionRequests {
			h := backend.Handle{Type: backend.SnapshotFile, Name: fmt.Sprintf("%064x", i)}
			if err := be.Backend.Save(ctx, h, bytes.NewReader([]byte("x")), 1); err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		be.max = 0
		if _, err := r.ExtendRetention(ctx, hs, time.Now().Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		// The set limit is reached; the default one at least exceeds it.
		if be.max > c.want || be.max < min(c.want, 4) {
			t.Errorf("RetentionRequests %d: %d requests in flight at most, want %d", c.set, be.max, c.want)
		}
	}
}
