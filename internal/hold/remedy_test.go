package hold

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
)

// Hold records the storage did not answer for are not damaged: the
// remedy is to run the command again, never to restore them from a copy
// (hostile-s3 M2).
func TestRemedyForOutage(t *testing.T) {
	out := &Unreadable{ID: id.Hash([]byte("a")), Err: fmt.Errorf("loading: %w: giving up after 6 attempts", backend.ErrUnavailable)}
	bad := &Unreadable{ID: id.Hash([]byte("b")), Err: errors.New("authentication failed")}
	if r := RemedyFor([]error{out}); strings.Contains(r, "restore the record") || !strings.Contains(r, "nothing is known to be damaged") {
		t.Errorf("outage only: %q", r)
	}
	if r := RemedyFor([]error{bad}); r != Remedy {
		t.Errorf("damage only: %q", r)
	}
	if r := RemedyFor([]error{out, bad}); !strings.Contains(r, "for 1 of them the storage did not answer") || !strings.Contains(r, Remedy) {
		t.Errorf("both: %q", r)
	}
}
