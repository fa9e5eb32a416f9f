package retry

import (
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/backendtest"
	"github.com/nestguard/nestguard/internal/backend/mem"
)

// The wrapper keeps the backend contract: nothing it adds changes what a
// healthy backend does.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(*testing.T) backend.Backend { return New(mem.New(), fast) })
}
