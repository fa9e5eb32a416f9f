package prune

import (
	"strings"
	"testing"
)

func TestParseUnused(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Unused
	}{
		{"5%", Unused{Percent: 5}},
		{"0%", Unused{Percent: 0}},
		{"0", Unused{Percent: 0}},
		{"12.5%", Unused{Percent: 12.5}},
		{"100%", Unused{Unlimited: true}},
		{"unlimited", Unused{Unlimited: true}},
		{"500M", Unused{Bytes: 500 << 20}},
		{"2GiB", Unused{Bytes: 2 << 30}},
		{"10k", Unused{Bytes: 10 << 10}},
		{"5B", Unused{Bytes: 5}},
	} {
		got, err := ParseUnused(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseUnused(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "-1%", "101%", "x%", "5X", "NaN%", "99999999999999999999G"} {
		if got, err := ParseUnused(bad); err == nil {
			t.Errorf("ParseUnused(%q) = %+v, want an error", bad, got)
		}
	}
	// A number alone (restic reads it as bytes) is most often meant as a
	// percentage: refused, naming both spellings.
	for _, bare := range []string{"5", "10", "1048576"} {
		_, err := ParseUnused(bare)
		if err == nil || !strings.Contains(err.Error(), bare+"%") || !strings.Contains(err.Error(), bare+"B") {
			t.Errorf("ParseUnused(%q): %v, want an error naming %s%% and %sB", bare, err, bare, bare)
		}
	}
}

// TestUnusedLimit: restic's rule, unused/(used+unused) at most the
// percentage.
func TestUnusedLimit(t *testing.T) {
	if got := (Unused{Percent: 5}).limit(95 << 20); got != 5<<20 {
		t.Errorf("5%% of 95 MiB used: %d, want 5 MiB", got)
	}
	if got := (Unused{Percent: 0}).limit(1 << 30); got != 0 {
		t.Errorf("0%%: %d", got)
	}
	if got := (Unused{Bytes: 7}).limit(1 << 30); got != 7 {
		t.Errorf("7 bytes: %d", got)
	}
}
