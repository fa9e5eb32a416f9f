package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin for the DST test, on any machine

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// snap makes a snapshot whose ID derives from its time, host, paths and
// tags, so tests can build them independently and compare by time.
func snap(t time.Time, host string, paths []string, tags ...string) *snapshot.Snapshot {
	key := fmt.Sprint(t.Format(time.RFC3339Nano), host, paths, tags)
	return &snapshot.Snapshot{ID: id.Hash([]byte(key)), Time: t, Hostname: host, Paths: paths, Tags: tags, Kind: snapshot.KindFiles}
}

// dailies returns one snapshot a day at 12:00 UTC from first to last
// inclusive (dates as 2006-01-02), in shuffled-enough order (oldest first
// would hide a sorting bug: they are interleaved odd/even).
func dailies(t *testing.T, first, last string) []*snapshot.Snapshot {
	t.Helper()
	a, err := time.Parse(time.DateOnly, first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := time.Parse(time.DateOnly, last)
	if err != nil {
		t.Fatal(err)
	}
	var even, odd []*snapshot.Snapshot
	for d, i := a.Add(12*time.Hour), 0; !d.After(b.Add(12 * time.Hour)); d, i = d.AddDate(0, 0, 1), i+1 {
		if i%2 == 0 {
			even = append(even, snap(d, "h", []string{"/srv"}))
		} else {
			odd = append(odd, snap(d, "h", []string{"/srv"}))
		}
	}
	return append(odd, even...)
}

func one(t *testing.T, snaps []*snapshot.Snapshot, p Policy, now time.Time) Result {
	t.Helper()
	res, err := Apply(snaps, p, DefaultGroupBy, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 {
		t.Fatalf("got %d groups, want 1", len(res))
	}
	r := res[0]
	if len(r.Keep)+len(r.Remove) != len(snaps) {
		t.Fatalf("keep %d + remove %d != %d snapshots", len(r.Keep), len(r.Remove), len(snaps))
	}
	for _, ds := range [][]Decision{r.Keep, r.Remove} {
		for i, d := range ds {
			if len(d.Reasons) == 0 {
				t.Errorf("snapshot %s has no reason", d.Snapshot.Time)
			}
			if i > 0 && d.Snapshot.Time.After(ds[i-1].Snapshot.Time) {
				t.Errorf("decisions not newest first at %d", i)
			}
		}
	}
	return r
}

func days(ds []Decision) []string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Snapshot.Time.Format(time.DateOnly)
	}
	return s
}

func mustDuration(t *testing.T, s string) Duration {
	t.Helper()
	d, err := ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// monthEnds2026 is the last day of each month of 2026, newest first.
var monthEnds2026 = []string{"2026-12-31", "2026-11-30", "2026-10-31", "2026-09-30", "2026-08-31", "2026-07-31",
	"2026-06-30", "2026-05-31", "2026-04-30", "2026-03-31", "2026-02-28", "2026-01-31"}

func TestYearOfDailies(t *testing.T) {
	// 2026-01-01 is a Thursday (ISO 2026-W01), 2026-12-31 too (2026-W53).
	snaps := dailies(t, "2026-01-01", "2026-12-31")
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		p     Policy
		count int
		keep  []string // the whole kept list, newest first, if set
		has   []string // kept days, if keep is not set
	}{
		{name: "last 3", p: Policy{KeepLast: 3}, keep: []string{"2026-12-31", "2026-12-30", "2026-12-29"}},
		{name: "last unlimited", p: Policy{KeepLast: Unlimited}, count: 365},
		{name: "daily 7", p: Policy{KeepDaily: 7}, keep: []string{"2026-12-31", "2026-12-30", "2026-12-29", "2026-12-28", "2026-12-27", "2026-12-26", "2026-12-25"}},
		{name: "daily unlimited", p: Policy{KeepDaily: Unlimited}, count: 365},
		// The newest of each ISO week: Thursday 12-31 (W53), then Sundays.
		{name: "weekly 4", p: Policy{KeepWeekly: 4}, keep: []string{"2026-12-31", "2026-12-27", "2026-12-20", "2026-12-13"}},
		// 53 ISO weeks (52 Sundays and 12-31), plus 01-01, the oldest,
		// kept because the rule has buckets left (restic >= 0.17).
		{name: "weekly unlimited", p: Policy{KeepWeekly: Unlimited}, count: 54, has: []string{"2026-01-04", "2026-01-01"}},
		// Exactly 12 buckets: the count runs out at 01-31, 01-01 goes.
		{name: "monthly 12", p: Policy{KeepMonthly: 12}, keep: monthEnds2026},
		{name: "monthly 13", p: Policy{KeepMonthly: 13}, keep: append(slices.Clone(monthEnds2026), "2026-01-01")},
		{name: "yearly 3", p: Policy{KeepYearly: 3}, keep: []string{"2026-12-31", "2026-01-01"}},
		// 7 days, weeklies 12-20 and 12-13 (12-31 and 12-27 are dailies),
		// 11 month ends (12-31 is a daily): 20.
		{name: "daily 7 weekly 4 monthly 12", p: Policy{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12}, count: 20,
			has: []string{"2026-12-25", "2026-12-20", "2026-12-13", "2026-11-30", "2026-01-31"}},
		// Newer than 12-31 12:00 minus 35 days (11-26 12:00, excluded).
		{name: "within 35d", p: Policy{KeepWithin: mustDuration(t, "35d")}, count: 35, has: []string{"2026-11-27"}},
		// 1m before 12-31 is 11-30 (clamped), not 12-01 as with AddDate.
		{name: "within 1m", p: Policy{KeepWithin: mustDuration(t, "1m")}, count: 31, has: []string{"2026-12-01"}},
		{name: "within-daily 7d", p: Policy{KeepWithinDaily: mustDuration(t, "7d")}, count: 7, has: []string{"2026-12-25"}},
		{name: "within-weekly 1m", p: Policy{KeepWithinWeekly: mustDuration(t, "1m")}, keep: []string{"2026-12-31", "2026-12-27", "2026-12-20", "2026-12-13", "2026-12-06"}},
		// Within rules have no oldest-snapshot extra.
		{name: "within-monthly 1y", p: Policy{KeepWithinMonthly: mustDuration(t, "1y")}, keep: monthEnds2026},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := one(t, snaps, c.p, now)
			got := days(r.Keep)
			if c.keep != nil {
				if !slices.Equal(got, c.keep) {
					t.Fatalf("kept %v, want %v", got, c.keep)
				}
				return
			}
			if len(got) != c.count {
				t.Errorf("kept %d, want %d", len(got), c.count)
			}
			for _, d := range c.has {
				if !slices.Contains(got, d) {
					t.Errorf("%s not kept", d)
				}
			}
		})
	}
}

// TestResticDocExample checks restic's documented example: daily backups
// and --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75
// "will keep the most recent 7 daily snapshots, then 4 (remember, 7
// dailies already include a week!) last-day-of-the-weeks and 11 or 12
// last-day-of-the-months (11 or 12 depends if the 5 weeklies cross a
// month). And finally 75 last-day-of-the-year snapshots."
func TestResticDocExample(t *testing.T) {
	// Three years ending on a Sunday (2026-12-27), so the 7 dailies are
	// one ISO week.
	snaps := dailies(t, "2024-01-01", "2026-12-27")
	r := one(t, snaps, Policy{KeepDaily: 7, KeepWeekly: 5, KeepMonthly: 12, KeepYearly: 75}, time.Date(2026, 12, 28, 0, 0, 0, 0, time.UTC))
	want := []string{
		"2026-12-27", "2026-12-26", "2026-12-25", "2026-12-24", "2026-12-23", "2026-12-22", "2026-12-21", // 7 daily
		"2026-12-20", "2026-12-13", "2026-12-06", "2026-11-29", // 4 more weekly
		"2026-11-30", "2026-10-31", "2026-09-30", "2026-08-31", "2026-07-31", "2026-06-30", "2026-05-31",
		"2026-04-30", "2026-03-31", "2026-02-28", "2026-01-31", // 11 more monthly
		"2025-12-31", "2024-12-31", // 2 more yearly
		"2024-01-01", // the oldest: keep-yearly has buckets left
	}
	got := days(r.Keep)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("kept %d %v\nwant %d %v", len(got), got, len(want), want)
	}
	oldest := r.Keep[len(r.Keep)-1]
	if s := strings.Join(oldest.Strings(), "; "); s != "oldest snapshot (keep-yearly has buckets left, 2024)" {
		t.Errorf("oldest reason %q", s)
	}
	newest := strings.Join(r.Keep[0].Strings(), "; ")
	if newest != "daily snapshot (2026-12-27); weekly snapshot (2026-W52); monthly snapshot (2026-12); yearly snapshot (2026)" {
		t.Errorf("newest reasons %q", newest)
	}
}

// TestDailyGaps is restic's documented safety property: days without a
// snapshot do not count, so --keep-daily 4 after a weekend without
// backups keeps the last 4 days that have one.
func TestDailyGaps(t *testing.T) {
	var snaps []*snapshot.Snapshot
	for _, d := range []string{"2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06", "2026-03-09"} { // Mon..Fri, Mon
		tm, _ := time.Parse(time.DateOnly, d)
		snaps = append(snaps, snap(tm.Add(20*time.Hour), "h", nil))
	}
	r := one(t, snaps, Policy{KeepDaily: 4}, time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC))
	if got, want := days(r.Keep), []string{"2026-03-09", "2026-03-06", "2026-03-05", "2026-03-04"}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	if got := r.Remove[0].Strings(); !slices.Equal(got, []string{"older than the newest 4 daily buckets"}) {
		t.Errorf("remove reason %q", got)
	}
}

func TestTimeZone(t *testing.T) {
	plus2 := time.FixedZone("UTC+2", 2*3600)
	a := snap(time.Date(2026, 3, 10, 23, 30, 0, 0, plus2), "h", nil) // 21:30 UTC on the 10th
	b := snap(time.Date(2026, 3, 11, 0, 30, 0, 0, plus2), "h", nil)  // 22:30 UTC on the 10th
	c := snap(time.Date(2026, 3, 9, 12, 0, 0, 0, plus2), "h", nil)
	r := one(t, []*snapshot.Snapshot{a, b, c}, Policy{KeepDaily: 2}, b.Time.Add(time.Hour))
	if len(r.Keep) != 2 || r.Keep[0].Snapshot != b || r.Keep[1].Snapshot != a {
		t.Fatalf("kept %v, want the local days 03-11 and 03-10", days(r.Keep))
	}
	if bk := r.Keep[1].Reasons[0].Bucket; bk != "2026-03-10" {
		t.Errorf("bucket of 23:30+02:00 is %q, want 2026-03-10", bk)
	}
}

func TestDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-03-29 has 23 hours in Berlin; 2026-10-25 has 25.
	snaps := []*snapshot.Snapshot{
		snap(time.Date(2026, 3, 29, 0, 30, 0, 0, berlin), "h", nil),
		snap(time.Date(2026, 3, 29, 23, 30, 0, 0, berlin), "h", nil),
		snap(time.Date(2026, 10, 25, 0, 30, 0, 0, berlin), "h", nil),
		snap(time.Date(2026, 10, 25, 23, 30, 0, 0, berlin), "h", nil),
		snap(time.Date(2026, 10, 26, 0, 30, 0, 0, berlin), "h", nil),
	}
	r := one(t, snaps, Policy{KeepDaily: 3}, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	got := make([]string, len(r.Keep))
	for i, d := range r.Keep {
		got[i] = d.Snapshot.Time.Format("2006-01-02 15:04")
	}
	if want := []string{"2026-10-26 00:30", "2026-10-25 23:30", "2026-03-29 23:30"}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	// 1d before 10-26 00:30 is 10-25 00:30 local: 25 hours earlier.
	if d := mustDuration(t, "1d").Before(snaps[4].Time); !d.Equal(snaps[2].Time) || snaps[4].Time.Sub(d) != 25*time.Hour {
		t.Errorf("1d before %v = %v", snaps[4].Time, d)
	}
}

func TestISOWeekAcrossYears(t *testing.T) {
	at := func(y int, m time.Month, d int) *snapshot.Snapshot {
		return snap(time.Date(y, m, d, 12, 0, 0, 0, time.UTC), "h", nil)
	}
	snaps := []*snapshot.Snapshot{
		at(2020, 12, 20), // Sunday, 2020-W51
		at(2020, 12, 28), // Monday, 2020-W53
		at(2020, 12, 31), // Thursday, 2020-W53
		at(2021, 1, 3),   // Sunday, 2020-W53
		at(2021, 1, 4),   // Monday, 2021-W01
	}
	r := one(t, snaps, Policy{KeepWeekly: 5}, time.Date(2021, 2, 1, 0, 0, 0, 0, time.UTC))
	if got, want := days(r.Keep), []string{"2021-01-04", "2021-01-03", "2020-12-20"}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	var buckets []string
	for _, d := range r.Keep {
		buckets = append(buckets, d.Reasons[0].Bucket)
	}
	if want := []string{"2021-W01", "2020-W53", "2020-W51"}; !slices.Equal(buckets, want) {
		t.Errorf("buckets %v, want %v", buckets, want)
	}
	if got := r.Remove[0].Strings()[0]; got != "weekly bucket 2020-W53 already keeps the newer snapshot "+snaps[3].ID.Short() {
		t.Errorf("remove reason %q", got)
	}
	for tm, want := range map[time.Time]string{
		time.Date(2024, 12, 30, 0, 0, 0, 0, time.UTC): "2025-W01",
		time.Date(2024, 12, 29, 0, 0, 0, 0, time.UTC): "2024-W52",
		time.Date(2027, 1, 3, 0, 0, 0, 0, time.UTC):   "2026-W53",
	} {
		if got := weekBucket(tm); got != want {
			t.Errorf("week of %v is %s, want %s", tm, got, want)
		}
	}
}

func TestTiesInBucket(t *testing.T) {
	day := func(d, h int) *snapshot.Snapshot {
		return snap(time.Date(2026, 5, d, h, 0, 0, 0, time.UTC), "h", nil)
	}
	morning, evening, before := day(10, 8), day(10, 20), day(9, 10)
	r := one(t, []*snapshot.Snapshot{morning, before, evening}, Policy{KeepDaily: 2}, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	if len(r.Keep) != 2 || r.Keep[0].Snapshot != evening || r.Keep[1].Snapshot != before {
		t.Fatalf("kept %v", r.Keep)
	}
	if len(r.Remove) != 1 || r.Remove[0].Snapshot != morning {
		t.Fatalf("removed %v", r.Remove)
	}
	if got, want := r.Remove[0].Reasons[0].String(), "daily bucket 2026-05-10 already keeps the newer snapshot "+evening.ID.Short(); got != want {
		t.Errorf("reason %q, want %q", got, want)
	}

	// Equal times: the order is by ID, the same on every run.
	x := snap(time.Date(2026, 5, 10, 8, 0, 0, 0, time.UTC), "h", nil, "x")
	y := snap(time.Date(2026, 5, 10, 8, 0, 0, 0, time.UTC), "h", nil, "y")
	first := x
	if y.ID.String() < x.ID.String() {
		first = y
	}
	for _, order := range [][]*snapshot.Snapshot{{x, y, before}, {y, x, before}} {
		res, err := Apply(order, Policy{KeepLast: 1}, GroupBy{}, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		if k := res[0].Keep[0].Snapshot; k != first {
			t.Errorf("tie kept %s, want %s", k.ID.Short(), first.ID.Short())
		}
	}
}

func TestKeepLast(t *testing.T) {
	snaps := dailies(t, "2026-01-01", "2026-01-05")
	r := one(t, snaps, Policy{KeepLast: 2}, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	if got, want := days(r.Keep), []string{"2026-01-05", "2026-01-04"}; !slices.Equal(got, want) {
		t.Fatalf("kept %v", got)
	}
	if got := r.Keep[0].Strings(); !slices.Equal(got, []string{"last snapshot"}) {
		t.Errorf("keep reason %q", got)
	}
	if got := r.Remove[2].Strings(); !slices.Equal(got, []string{"not among the last 2 snapshots"}) {
		t.Errorf("remove reason %q", got)
	}
	r = one(t, snaps, Policy{KeepLast: 7}, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	if len(r.Keep) != 5 || r.Keep[4].Reasons[0].Oldest {
		t.Errorf("keep-last 7 of 5: kept %d, oldest flag %v (every snapshot is its own bucket)", len(r.Keep), r.Keep[4].Reasons[0].Oldest)
	}
}

// TestWithinReference: the within rules count back from the newest
// snapshot (as restic), not from now; a snapshot dated after now does not
// move the reference.
func TestWithinReference(t *testing.T) {
	snaps := dailies(t, "2026-01-01", "2026-01-31")
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) // backups stopped four months ago
	r := one(t, snaps, Policy{KeepWithin: mustDuration(t, "7d")}, now)
	if got, want := days(r.Keep), []string{"2026-01-31", "2026-01-30", "2026-01-29", "2026-01-28", "2026-01-27", "2026-01-26", "2026-01-25"}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	if !r.Ref.Equal(time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("reference %v", r.Ref)
	}
	if got := r.Keep[0].Strings(); !slices.Equal(got, []string{"within 7d"}) {
		t.Errorf("keep reason %q", got)
	}
	if got := r.Remove[0].Strings()[0]; !strings.HasPrefix(got, "not within 7d of the newest snapshot (2026-01-31T12:00:00Z)") {
		t.Errorf("remove reason %q", got)
	}

	future := snap(now.AddDate(1, 0, 0), "h", []string{"/srv"})
	r = one(t, append(slices.Clone(snaps), future), Policy{KeepWithin: mustDuration(t, "7d")}, now)
	if len(r.Keep) != 8 || r.Keep[0].Snapshot != future || !r.Ref.Equal(time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("with a future snapshot: kept %d, reference %v", len(r.Keep), r.Ref)
	}
}

func TestKeepTags(t *testing.T) {
	at := func(d int, tags ...string) *snapshot.Snapshot {
		return snap(time.Date(2026, 7, d, 12, 0, 0, 0, time.UTC), "h", nil, tags...)
	}
	snaps := []*snapshot.Snapshot{at(1, "finance"), at(2, "a"), at(3, "a", "b", "x"), at(4, "b"), at(5)}
	p := Policy{KeepLast: 1, KeepTags: [][]string{{"finance"}, {"a", "b"}}}
	res, err := Apply(snaps, p, GroupBy{Host: true}, time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if got, want := days(r.Keep), []string{"2026-07-05", "2026-07-03", "2026-07-01"}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	if got := r.Keep[1].Strings(); !slices.Equal(got, []string{"tags a,b"}) {
		t.Errorf("reason %q", got)
	}
	if got := r.Keep[2].Strings(); !slices.Equal(got, []string{"tag finance"}) {
		t.Errorf("reason %q", got)
	}
	if got := r.Remove[0].Strings(); !slices.Equal(got, []string{"has none of the keep-tag groups [finance] [a,b]", "not among the last 1 snapshots"}) {
		t.Errorf("remove reasons %q", got)
	}
}

func TestGrouping(t *testing.T) {
	tm := func(d int) time.Time { return time.Date(2026, 8, d, 12, 0, 0, 0, time.UTC) }
	snaps := []*snapshot.Snapshot{
		snap(tm(1), "db1", []string{"/srv", "/etc"}),
		snap(tm(2), "db1", []string{"/etc", "/srv"}), // same paths, other order
		snap(tm(3), "db1", []string{"/var"}),
		snap(tm(4), "db2", []string{"/srv", "/etc"}, "t"),
		snap(tm(5), "db2", []string{"/srv", "/etc"}),
	}
	now := tm(10)
	cases := []struct {
		g    GroupBy
		want map[string][]string // group key -> kept days
	}{
		{DefaultGroupBy, map[string][]string{
			"host db1, paths [/etc,/srv]": {"2026-08-02"},
			"host db1, paths [/var]":      {"2026-08-03"},
			"host db2, paths [/etc,/srv]": {"2026-08-05"},
		}},
		{GroupBy{}, map[string][]string{"": {"2026-08-05"}}},
		{GroupBy{Host: true, Tags: true}, map[string][]string{
			"host db1, tags []":  {"2026-08-03"},
			"host db2, tags []":  {"2026-08-05"},
			"host db2, tags [t]": {"2026-08-04"},
		}},
	}
	for _, c := range cases {
		res, err := Apply(snaps, Policy{KeepLast: 1}, c.g, now)
		if err != nil {
			t.Fatal(err)
		}
		got := make(map[string][]string)
		var order []string
		for _, r := range res {
			got[r.Key.String()] = days(r.Keep)
			order = append(order, r.Key.String())
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%+v: got %v, want %v", c.g, got, c.want)
		}
		if !slices.IsSorted(order) {
			t.Errorf("%+v: groups not in key order: %v", c.g, order)
		}
	}

	for s, want := range map[string]GroupBy{"": {}, "host,paths": DefaultGroupBy, "tags": {Tags: true}, "host, tags ,paths": {Host: true, Tags: true, Paths: true}} {
		g, err := ParseGroupBy(s)
		if err != nil || g != want {
			t.Errorf("ParseGroupBy(%q) = %+v, %v; want %+v", s, g, err, want)
		}
	}
	if _, err := ParseGroupBy("host,kind"); err == nil || !strings.Contains(err.Error(), `"kind"`) {
		t.Errorf("ParseGroupBy(host,kind): %v", err)
	}
}

func TestInvalidPolicy(t *testing.T) {
	snaps := dailies(t, "2026-01-01", "2026-01-03")
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	if _, err := Apply(snaps, Policy{}, DefaultGroupBy, now); !errors.Is(err, ErrEmptyPolicy) {
		t.Errorf("empty policy: %v", err)
	}
	for _, p := range []Policy{{KeepDaily: -2}, {KeepLast: 1, KeepTags: [][]string{{}}}, {KeepTags: [][]string{{"a", ""}}}} {
		if _, err := Apply(snaps, p, DefaultGroupBy, now); err == nil || errors.Is(err, ErrEmptyPolicy) {
			t.Errorf("%+v: %v", p, err)
		}
	}
	// Any single rule makes the policy non-empty.
	for _, p := range []Policy{{KeepYearly: 1}, {KeepWithinHourly: Duration{Hours: 1}}, {KeepTags: [][]string{{"a"}}}} {
		if p.Empty() {
			t.Errorf("%+v is empty", p)
		}
	}
	if res, err := Apply(nil, Policy{KeepLast: 1}, DefaultGroupBy, now); err != nil || len(res) != 0 {
		t.Errorf("no snapshots: %v, %v", res, err)
	}
}

func TestParseDuration(t *testing.T) {
	for s, want := range map[string]Duration{
		"35d":      {Days: 35},
		"7y":       {Years: 7},
		"1y2m3d4h": {1, 2, 3, 4},
		"2m12h":    {Months: 2, Hours: 12},
		"0d":       {},
	} {
		d, err := ParseDuration(s)
		if err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %+v, %v; want %+v", s, d, err, want)
			continue
		}
		if back, _ := ParseDuration(d.String()); back != d {
			t.Errorf("%q does not round-trip: %q", s, d.String())
		}
	}
	for _, s := range []string{"", "d", "35", "5x", "1d2y", "1d1d", "-1d", "1.5d", "99999999999999999999d", "3 d"} {
		if d, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) = %+v, want an error", s, d)
		}
	}
	// Calendar arithmetic: a month back from 03-15 is 02-15, from 03-31
	// the end of February; a year back from a leap day is 02-28.
	for from, want := range map[time.Time]time.Time{
		time.Date(2026, 3, 31, 10, 0, 0, 0, time.UTC): time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC),
		time.Date(2024, 3, 31, 10, 0, 0, 0, time.UTC): time.Date(2024, 2, 29, 10, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC): time.Date(2025, 12, 31, 10, 0, 0, 0, time.UTC),
	} {
		if got := mustDuration(t, "1m").Before(from); !got.Equal(want) {
			t.Errorf("1m before %v = %v, want %v", from, got, want)
		}
	}
	if got := mustDuration(t, "1y").Before(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)); !got.Equal(time.Date(2023, 2, 28, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("1y before 2024-02-29 = %v", got)
	}
	base := time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)
	if got := mustDuration(t, "1m").Before(base); !got.Equal(time.Date(2026, 2, 15, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("1m before %v = %v", base, got)
	}
	if got := mustDuration(t, "1y2m3d4h").Before(base); !got.Equal(time.Date(2025, 1, 12, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("1y2m3d4h before %v = %v", base, got)
	}
	var d Duration
	if err := d.UnmarshalText([]byte("35d")); err != nil || d != (Duration{Days: 35}) {
		t.Errorf("UnmarshalText: %+v, %v", d, err)
	}
}

func TestDurationAfter(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }
	cases := []struct {
		d        string
		from, to time.Time
	}{
		{"7y", utc(2026, 3, 4, 10), utc(2033, 3, 4, 10)},
		{"90d", utc(2026, 12, 15, 10), utc(2027, 3, 15, 10)}, // across the year
		// A day the target month lacks moves to the first of the next
		// month: a floor never ends early.
		{"1m", utc(2026, 1, 31, 10), utc(2026, 3, 1, 10)},
		{"1y", utc(2024, 2, 29, 10), utc(2025, 3, 1, 10)},
		{"4y", utc(2024, 2, 29, 10), utc(2028, 2, 29, 10)},
		{"1m", utc(2026, 12, 31, 10), utc(2027, 1, 31, 10)},
		{"1y2m3d4h", utc(2025, 1, 12, 6), utc(2026, 3, 15, 10)},
		// Calendar days across DST keep the wall clock (23 or 25 hours).
		{"1d", time.Date(2026, 3, 28, 12, 0, 0, 0, berlin), time.Date(2026, 3, 29, 12, 0, 0, 0, berlin)},
		{"1d", time.Date(2026, 10, 24, 12, 0, 0, 0, berlin), time.Date(2026, 10, 25, 12, 0, 0, 0, berlin)},
		{"0d", utc(2026, 1, 1, 0), utc(2026, 1, 1, 0)},
	}
	for _, c := range cases {
		d := mustDuration(t, c.d)
		got := d.After(c.from)
		if !got.Equal(c.to) {
			t.Errorf("%s after %v = %v, want %v", c.d, c.from, got, c.to)
		}
		// Never less than d: going back from the result reaches at least
		// the start.
		if back := d.Before(got); back.Before(c.from) {
			t.Errorf("%s after %v = %v, and %s before that is %v: less than %s", c.d, c.from, got, c.d, back, c.d)
		}
	}
	if h := time.Date(2026, 3, 29, 12, 0, 0, 0, berlin).Sub(time.Date(2026, 3, 28, 12, 0, 0, 0, berlin)); h != 23*time.Hour {
		t.Errorf("the DST day has %v", h)
	}
}

func TestGroupByClass(t *testing.T) {
	tm := func(d int) time.Time { return time.Date(2026, 8, d, 12, 0, 0, 0, time.UTC) }
	snaps := []*snapshot.Snapshot{snap(tm(1), "db1", []string{"/srv"}), snap(tm(2), "db1", []string{"/srv"}), snap(tm(3), "db1", []string{"/srv"})}
	snaps[0].Class, snaps[1].Class = "fin", "fin"
	groups := Group(snaps, GroupBy{Host: true, Paths: true, Class: true})
	if len(groups) != 2 || groups[0].Key.String() != "host db1, paths [/srv]" || groups[1].Key.String() != "host db1, paths [/srv], class fin" {
		t.Fatalf("groups %+v", groups)
	}
	// Each group with its own policy.
	r, err := ApplyGroup(groups[1], Policy{KeepLast: 1}, tm(10))
	if err != nil || len(r.Keep) != 1 || r.Keep[0].Snapshot != snaps[1] || len(r.Remove) != 1 {
		t.Errorf("ApplyGroup: %+v, %v", r, err)
	}
	if _, err := ApplyGroup(groups[0], Policy{}, tm(10)); !errors.Is(err, ErrEmptyPolicy) {
		t.Errorf("ApplyGroup with an empty policy: %v", err)
	}
	// Without Class, the classes share a group.
	if g := Group(snaps, DefaultGroupBy); len(g) != 1 {
		t.Errorf("%d groups without Class", len(g))
	}
}

// A duration too long for the clock to count is refused, not wrapped
// around: 2562048h overflows time.Duration, and a --keep-within or
// --keep-pitr that wrapped would count from the future (removing
// everything), a floor that wrapped would end in the past.
func TestDurationTooLong(t *testing.T) {
	for _, s := range []string{"2562048h", "9223372036854775807h", "10001y", "120001m", "3652501d", "400000000000y"} {
		if d, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) = %+v, want an error", s, d)
		}
	}
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	for _, s := range []string{"2562047h", "10000y", "120000m", "3652500d", "10000y120000m3652500d2562047h"} {
		d, err := ParseDuration(s)
		if err != nil {
			t.Errorf("ParseDuration(%q): %v", s, err)
			continue
		}
		if !d.Before(now).Before(now) || !d.After(now).After(now) {
			t.Errorf("%s: before %v is %v, after it %v", s, now, d.Before(now), d.After(now))
		}
	}
}

// TestGroupingOddPaths: a path may hold any byte but NUL, so paths that
// join to the same string ("/a\x01/b" and "/a", "/b") are still two
// groups: one --keep-last 1 must not remove the only snapshot of either.
func TestGroupingOddPaths(t *testing.T) {
	tm := func(d int) time.Time { return time.Date(2026, 8, d, 12, 0, 0, 0, time.UTC) }
	snaps := []*snapshot.Snapshot{
		snap(tm(1), "db1", []string{"/a\x01/b"}),
		snap(tm(2), "db1", []string{"/a", "/b"}),
		snap(tm(3), "db1\x00", nil, "t"),
		snap(tm(4), "db1", []string{"\x00t"}),
	}
	for _, g := range []GroupBy{DefaultGroupBy, {Host: true, Tags: true, Paths: true}} {
		res, err := Apply(snaps, Policy{KeepLast: 1}, g, tm(10))
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 4 {
			t.Errorf("%+v: %d groups, want 4", g, len(res))
		}
		for _, r := range res {
			if len(r.Remove) > 0 {
				t.Errorf("%+v: group %s removes %v", g, r.Key, days(r.Remove))
			}
		}
	}
}

// TestZoneOverride: snapshots recorded in UTC (as backups record them)
// counted in a business's zone: the month-end backup at 22:00 New York
// time on 03-31 (02:00 UTC on 04-01) is March's.
func TestZoneOverride(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	c := snap(time.Date(2026, 4, 30, 2, 0, 0, 0, time.UTC), "h", nil) // 04-29 22:00 in New York
	a := snap(time.Date(2026, 4, 1, 2, 0, 0, 0, time.UTC), "h", nil)  // 03-31 22:00
	b := snap(time.Date(2026, 3, 30, 2, 0, 0, 0, time.UTC), "h", nil) // 03-29 22:00
	groups := Group([]*snapshot.Snapshot{a, b, c}, DefaultGroupBy)
	p := Policy{KeepMonthly: 2}
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	utc, err := ApplyGroupIn(groups[0], p, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(utc.Keep) != 2 || utc.Keep[0].Snapshot != c || utc.Keep[1].Snapshot != b {
		t.Errorf("UTC months: kept %v", days(utc.Keep))
	}
	local, err := ApplyGroupIn(groups[0], p, now, ny)
	if err != nil {
		t.Fatal(err)
	}
	if len(local.Keep) != 2 || local.Keep[0].Snapshot != c || local.Keep[1].Snapshot != a {
		t.Fatalf("New York months: kept %v", days(local.Keep))
	}
	if bk := local.Keep[1].Reasons[0].Bucket; bk != "2026-03" {
		t.Errorf("bucket of 03-31 22:00 New York time is %q, want 2026-03", bk)
	}
	if len(local.Remove) != 1 || local.Remove[0].Snapshot != b {
		t.Errorf("New York months: removed %v", days(local.Remove))
	}
}
