package repository

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
)

// downFor is a store that does not answer reads of some objects: their
// loads fail with backend.ErrUnavailable, as package retry's give-up does.
type downFor struct {
	backend.Backend
	mu   sync.Mutex
	down map[backend.Handle]bool
	all  backend.FileType // every object of this type, if set
}

func (d *downFor) Load(ctx context.Context, h backend.Handle, off, n int64) (io.ReadCloser, error) {
	d.mu.Lock()
	fail := d.down[h] || h.Type == d.all
	d.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("loading %s: %w: giving up after 6 attempts: 503 SlowDown", h, backend.ErrUnavailable)
	}
	return d.Backend.Load(ctx, h, off, n)
}

// TestOutageIsNotADamagedCopy: a blob read from its other copy because
// the store did not answer for the first is no damaged copy (verify
// reports DamagedCopies as damage); an index object the store does not
// answer for fails LoadIndex instead of being recorded damaged and its
// packs read from their headers (hostile-s3 M2).
func TestOutageIsNotADamagedCopy(t *testing.T) {
	ctx := context.Background()
	dir, want, _, _ := twoCopies(t)
	lb, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	be := &downFor{Backend: lb, down: map[backend.Handle]bool{}}
	var log logBuffer
	o := testOptions()
	o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	r, err := Open(ctx, be, pass, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for bid := range want {
		e, _ := r.Index().Lookup(bid)
		be.mu.Lock()
		be.down[backend.Handle{Type: backend.PackFile, Name: e.Pack.String()}] = true
		be.mu.Unlock()
	}
	for bid, d := range want {
		got, err := r.LoadBlob(ctx, bid, nil)
		if err != nil || string(got) != string(d) {
			t.Fatalf("LoadBlob %s with its first copy out of reach: %v", bid.Short(), err)
		}
	}
	if dc := r.DamagedCopies(); len(dc) != 0 {
		t.Errorf("packs the store did not answer for recorded as damaged copies: %+v", dc)
	}

	be = &downFor{Backend: lb, all: backend.IndexFile}
	r, err = Open(ctx, be, pass, o)
	if err != nil {
		t.Fatal(err)
	}
	err = r.LoadIndex(ctx)
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("LoadIndex with the index objects out of reach: %v, want backend.ErrUnavailable", err)
	}
	if ie := r.IndexErrors(); len(ie) != 0 {
		t.Errorf("index objects out of reach recorded as damaged: %+v", ie)
	}
}
