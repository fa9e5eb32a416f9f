package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestParseWhenNegative: a negative duration, Go's or a calendar one,
// is a usage error that says why, not a time after now nor the generic
// "want RFC 3339 ..." that would suggest the user wrote something else.
func TestParseWhenNegative(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"-24h", "-90d", "-1y", "-1y6m"} {
		_, err := parseWhen(s, now)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "cannot be negative") {
			t.Errorf("parseWhen(%q): %v, want a usage error saying it cannot be negative", s, err)
		}
	}
	for s, want := range map[string]time.Time{
		"24h":  now.Add(-24 * time.Hour),
		"90d":  now.AddDate(0, 0, -90),
		"1y6m": time.Date(2025, 6, 6, 12, 0, 0, 0, time.UTC),
	} {
		if got, err := parseWhen(s, now); err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
}
