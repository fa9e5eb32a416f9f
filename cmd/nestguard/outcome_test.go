package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/forget"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// forget's error counts right (hostile-s3 L3: "1 snapshots could not be
// removed (the others were)" when there were no others).
func TestForgetOutcomeWording(t *testing.T) {
	cause := errors.New("permission denied")
	entry := func(failed bool) forget.Entry {
		e := forget.Entry{Snapshot: &snapshot.Snapshot{}, Action: forget.Remove, Removed: !failed}
		if failed {
			e.Err = cause
		}
		return e
	}
	for _, c := range []struct {
		failed, removed int
		want            string
	}{
		{1, 0, "no snapshot was removed: permission denied"},
		{2, 0, "no snapshot was removed: permission denied"},
		{1, 1, "1 snapshot could not be removed (1 other was): permission denied"},
		{1, 3, "1 snapshot could not be removed (3 others were): permission denied"},
		{2, 1, "2 snapshots could not be removed (1 other was): permission denied"},
	} {
		var g forget.Group
		for range c.failed {
			g.Entries = append(g.Entries, entry(true))
		}
		for range c.removed {
			g.Entries = append(g.Entries, entry(false))
		}
		err := forgetOutcome(&forget.Report{Groups: []forget.Group{g}}, cause)
		if err == nil || err.Error() != c.want {
			t.Errorf("%d failed, %d removed: %v, want %q", c.failed, c.removed, err, c.want)
		}
	}
}

// Snapshot objects the storage did not answer for are named without
// sending the operator to verify damage (hostile-s3 M2).
func TestUnreadableSnapshotsOutage(t *testing.T) {
	var stderr strings.Builder
	a := newApp(system{stderr: &stderr})
	out := fmt.Errorf("snapshot 1a2b3c4d cannot be read: %w: giving up after 6 attempts", backend.ErrUnavailable)
	err := unreadableSnapshots(a, []error{out})
	if err == nil || strings.Contains(err.Error(), "verify") || !strings.Contains(err.Error(), "nothing is known to be damaged") {
		t.Errorf("outage: %v", err)
	}
	err = unreadableSnapshots(a, []error{out, errors.New("snapshot 5e6f7a8b cannot be read: authentication failed")})
	if err == nil || !strings.Contains(err.Error(), "run 'nestguard verify'") {
		t.Errorf("damage beside an outage: %v", err)
	}
}
