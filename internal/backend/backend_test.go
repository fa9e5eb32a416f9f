package backend_test

import (
	"context"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
)

// cleaner is a store with one optional capability.
type cleaner struct{ backend.Backend }

func (cleaner) CleanTemp(context.Context, time.Duration) (int, error) { return 0, nil }

// wrapper wraps a store, as the retrying backend does.
type wrapper struct{ backend.Backend }

func (w wrapper) Unwrap() backend.Backend { return w.Backend }

// As finds a capability on the store itself or through any number of
// wrappers, and reports its absence.
func TestAs(t *testing.T) {
	inner := cleaner{mem.New()}
	for name, be := range map[string]backend.Backend{"direct": inner, "wrapped": wrapper{inner}, "twice": wrapper{wrapper{inner}}} {
		if _, ok := backend.As[backend.TempCleaner](be); !ok {
			t.Errorf("%s: TempCleaner not found", name)
		}
		if _, ok := backend.As[backend.Locker](be); ok {
			t.Errorf("%s: found a Locker that is not there", name)
		}
	}
	if _, ok := backend.As[backend.TempCleaner](wrapper{mem.New()}); ok {
		t.Error("found a TempCleaner on a store without one")
	}
}
