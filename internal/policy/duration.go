package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a calendar duration such as "35d" or "1y2m3d4h": years and
// months move the calendar date (a month is 28 to 31 days), days are
// calendar days (23 to 25 hours across a DST change), hours are elapsed
// time.
type Duration struct {
	Years, Months, Days, Hours int
}

// ParseDuration parses a calendar duration: one or more of <n>y, <n>m, <n>d
// and <n>h, each at most once and in that order ("35d", "7y", "1y2m3d4h").
// n is a non-negative decimal integer, at most maxUnit of its unit.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	if s == "" {
		return d, fmt.Errorf("invalid duration %q: want for example 35d, 7y or 1y2m3d4h", s)
	}
	rest := s
	order := "ymdh"
	for rest != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if i <= 0 {
			if i == 0 {
				return Duration{}, fmt.Errorf("invalid duration %q: %q has no number before it (want for example 35d, 7y or 1y2m3d4h)", s, rest[:1])
			}
			return Duration{}, fmt.Errorf("invalid duration %q: number %q has no unit (y, m, d or h)", s, rest)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil {
			return Duration{}, fmt.Errorf("invalid duration %q: %w", s, err)
		}
		unit := rest[i]
		pos := strings.IndexByte(order, unit)
		if pos < 0 {
			return Duration{}, fmt.Errorf("invalid duration %q: unknown unit %q (want y, m, d or h, in that order, each at most once)", s, unit)
		}
		order = order[pos+1:]
		if n > maxUnit[unit] {
			return Duration{}, fmt.Errorf("invalid duration %q: %d%c is too long (at most %d%c, %s)", s, n, unit, maxUnit[unit], unit, maxUnitWhy[unit])
		}
		switch unit {
		case 'y':
			d.Years = n
		case 'm':
			d.Months = n
		case 'd':
			d.Days = n
		case 'h':
			d.Hours = n
		}
		rest = rest[i+1:]
	}
	return d, nil
}

// maxUnit bounds each unit of a duration, so that moving a time by any
// duration stays within what time.Time counts and never wraps around (a
// --keep-within that wrapped would count from the future, a floor that
// wrapped would end in the past): 10000 years of each calendar unit, and
// as many hours as time.Duration holds.
var maxUnit = map[byte]int{'y': 10000, 'm': 12 * 10000, 'd': 3652500, 'h': int(math.MaxInt64 / int64(time.Hour))}

var maxUnitWhy = map[byte]string{'y': "10000 years", 'm': "10000 years", 'd': "10000 years", 'h': "about 292 years; use d or y"}

// Zero reports whether d is empty (every field zero).
func (d Duration) Zero() bool { return d == Duration{} }

// Before returns t moved back by d, in t's location: years and months
// first, with the day clamped to the end of a shorter month (1m before
// 03-31 is 02-28, where time.AddDate, and so restic, would give 03-03),
// then days with AddDate, then hours.
func (d Duration) Before(t time.Time) time.Time {
	y, m, day := t.Date()
	y, m = y-d.Years, m-time.Month(d.Months)
	if last := time.Date(y, m+1, 0, 0, 0, 0, 0, t.Location()).Day(); day > last {
		day = last
	}
	h, mi, s := t.Clock()
	back := time.Date(y, m, day, h, mi, s, t.Nanosecond(), t.Location())
	return back.AddDate(0, 0, -d.Days).Add(-time.Duration(d.Hours) * time.Hour)
}

// After returns t moved forward by d, in t's location, for a floor (the
// earliest time something may go): years and months first, then days
// with AddDate, then hours. A day the target month lacks moves to the
// first day of the next month (1m after 01-31 is 03-01, 1y after a leap
// day is 03-01), so that the result is never less than d after t.
func (d Duration) After(t time.Time) time.Time {
	y, m, day := t.Date()
	y, m = y+d.Years, m+time.Month(d.Months)
	if last := time.Date(y, m+1, 0, 0, 0, 0, 0, t.Location()).Day(); day > last {
		m, day = m+1, 1
	}
	h, mi, s := t.Clock()
	fwd := time.Date(y, m, day, h, mi, s, t.Nanosecond(), t.Location())
	return fwd.AddDate(0, 0, d.Days).Add(time.Duration(d.Hours) * time.Hour)
}

// String returns d in the form ParseDuration reads ("1y2m", "35d"); the
// zero duration is "0d".
func (d Duration) String() string {
	var b strings.Builder
	for _, p := range []struct {
		n    int
		unit string
	}{{d.Years, "y"}, {d.Months, "m"}, {d.Days, "d"}, {d.Hours, "h"}} {
		if p.n != 0 {
			b.WriteString(strconv.Itoa(p.n) + p.unit)
		}
	}
	if b.Len() == 0 {
		return "0d"
	}
	return b.String()
}

// MarshalText writes d as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads d as ParseDuration does.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
