// Package policy decides which snapshots a forget keeps, with the
// semantics of restic's forget --keep-* options, and says why: every kept
// snapshot carries each rule that kept it, every removed one why no rule
// kept it.
//
// Snapshots are first divided into groups (by default by host and paths);
// the policy then applies to each group on its own. Within a group the
// snapshots are taken newest first. A count rule (KeepLast, KeepHourly,
// KeepDaily, KeepWeekly, KeepMonthly, KeepYearly) keeps the newest
// snapshot of each of the newest N calendar buckets (hour, day, ISO week,
// month, year) that hold a snapshot; -1 means every bucket. Buckets are
// computed in the snapshot's own time zone (the location of
// snapshot.Snapshot.Time), so a snapshot taken at 23:30 in UTC+2 belongs
// to that local day (ApplyGroupIn counts them in a zone of the caller's
// choice instead). As in restic (since 0.17), when a count rule still has
// buckets left after the newest snapshots, it also keeps the oldest
// snapshot of the group, so a short history is kept whole. The KeepWithin*
// rules keep snapshots newer than a calendar duration before the group's
// reference time (see Apply), KeepWithin all of them and KeepWithinDaily
// and the others the newest of each bucket. KeepTags keeps every snapshot
// that has all the tags of one of its groups. The rules combine as a union:
// a snapshot is kept if any rule keeps it.
//
// This package only applies the policy. Class floors, legal holds and
// Object Lock retention are not decided here: a later layer vetoes
// removals this package proposes, and never adds any.
package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/snapshot"
)

// Unlimited as a count keeps every bucket, as restic's "unlimited".
const Unlimited = -1

// Policy says which snapshots of a group to keep. The zero Policy keeps
// nothing in particular and is refused by Apply (ErrEmptyPolicy).
type Policy struct {
	KeepLast    int `json:"keep_last,omitempty"`
	KeepHourly  int `json:"keep_hourly,omitempty"`
	KeepDaily   int `json:"keep_daily,omitempty"`
	KeepWeekly  int `json:"keep_weekly,omitempty"`
	KeepMonthly int `json:"keep_monthly,omitempty"`
	KeepYearly  int `json:"keep_yearly,omitempty"`

	KeepWithin        Duration `json:"keep_within,omitzero"`
	KeepWithinHourly  Duration `json:"keep_within_hourly,omitzero"`
	KeepWithinDaily   Duration `json:"keep_within_daily,omitzero"`
	KeepWithinWeekly  Duration `json:"keep_within_weekly,omitzero"`
	KeepWithinMonthly Duration `json:"keep_within_monthly,omitzero"`
	KeepWithinYearly  Duration `json:"keep_within_yearly,omitzero"`

	// KeepTags keeps a snapshot that has every tag of at least one group.
	KeepTags [][]string `json:"keep_tags,omitempty"`
}

// ErrEmptyPolicy is returned for a policy without any rule: it would
// remove every snapshot.
var ErrEmptyPolicy = errors.New("empty retention policy: it would remove every snapshot; give at least one --keep-* rule")

// Empty reports whether p has no rule at all.
func (p Policy) Empty() bool {
	for _, r := range p.countRules() {
		if r.n != 0 {
			return false
		}
	}
	for _, r := range p.withinRules() {
		if !r.d.Zero() {
			return false
		}
	}
	return len(p.KeepTags) == 0
}

// Validate reports the first invalid rule of p, and ErrEmptyPolicy for an
// empty one.
func (p Policy) Validate() error {
	for _, r := range p.countRules() {
		if r.n < Unlimited {
			return fmt.Errorf("invalid retention policy: keep-%s %d: want a count >= 0, or -1 (unlimited)", r.rule, r.n)
		}
	}
	for i, g := range p.KeepTags {
		if len(g) == 0 || slices.Contains(g, "") {
			return fmt.Errorf("invalid retention policy: keep-tag group %d (%q) is empty or has an empty tag", i+1, g)
		}
	}
	if p.Empty() {
		return ErrEmptyPolicy
	}
	return nil
}

// Rule names a keep rule in a Reason.
type Rule string

// Rules.
const (
	RuleLast          Rule = "last"
	RuleHourly        Rule = "hourly"
	RuleDaily         Rule = "daily"
	RuleWeekly        Rule = "weekly"
	RuleMonthly       Rule = "monthly"
	RuleYearly        Rule = "yearly"
	RuleWithin        Rule = "within"
	RuleWithinHourly  Rule = "within-hourly"
	RuleWithinDaily   Rule = "within-daily"
	RuleWithinWeekly  Rule = "within-weekly"
	RuleWithinMonthly Rule = "within-monthly"
	RuleWithinYearly  Rule = "within-yearly"
	RuleTag           Rule = "tag"
)

// Reason is why one rule kept a snapshot, or why it did not.
type Reason struct {
	Rule Rule `json:"rule"`
	// Oldest is set when a count rule kept the group's oldest snapshot
	// because it had buckets left (restic's "keep the oldest" rule).
	Oldest bool `json:"oldest,omitempty"`
	// Bucket is the calendar bucket of the snapshot for the rule
	// ("2026-03-04", "2026-W09", "2026-03-04T13"), empty for last, within
	// and tag.
	Bucket string `json:"bucket,omitempty"`
	// Count is the rule's count (-1 unlimited), for count rules.
	Count int `json:"count,omitempty"`
	// Within is the rule's duration and Since the time it reaches back to,
	// for within rules.
	Within *Duration  `json:"within,omitempty"`
	Since  *time.Time `json:"since,omitempty"`
	// Tags is the keep-tag group, for the tag rule.
	Tags []string `json:"tags,omitempty"`
	// Detail says in words why the rule did not keep a removed snapshot;
	// empty for a kept one.
	Detail string `json:"detail,omitempty"`
}

// String describes the reason in a few words: "daily snapshot
// (2026-03-04)", "within 35d", "tag finance", or for a removed snapshot its
// Detail.
func (r Reason) String() string {
	if r.Detail != "" {
		return r.Detail
	}
	switch {
	case r.Rule == RuleLast:
		s := "last snapshot"
		if r.Oldest {
			s = "oldest snapshot (keep-last has snapshots left)"
		}
		return s
	case r.Rule == RuleWithin:
		return "within " + r.Within.String()
	case r.Rule == RuleTag:
		if len(r.Tags) == 1 {
			return "tag " + r.Tags[0]
		}
		return "tags " + strings.Join(r.Tags, ",")
	case strings.HasPrefix(string(r.Rule), "within-"):
		return fmt.Sprintf("%s snapshot within %s (%s)", strings.TrimPrefix(string(r.Rule), "within-"), r.Within, r.Bucket)
	case r.Oldest:
		return fmt.Sprintf("oldest snapshot (keep-%s has buckets left, %s)", r.Rule, r.Bucket)
	default:
		return fmt.Sprintf("%s snapshot (%s)", r.Rule, r.Bucket)
	}
}

// Decision is the verdict on one snapshot: the rules that kept it, or for
// a removed one why each rule of the policy did not.
type Decision struct {
	Snapshot *snapshot.Snapshot `json:"-"`
	Reasons  []Reason           `json:"reasons"`
}

// Strings returns the reasons as text. (JSON output adds the snapshot's
// ID and time itself: Snapshot is not marshalled.)
func (d Decision) Strings() []string {
	s := make([]string, len(d.Reasons))
	for i, r := range d.Reasons {
		s[i] = r.String()
	}
	return s
}

// Result is the policy applied to one group, newest snapshot first in
// Keep and in Remove.
type Result struct {
	Key    GroupKey   `json:"group"`
	Ref    time.Time  `json:"reference_time"` // what the within rules count back from
	Keep   []Decision `json:"keep"`
	Remove []Decision `json:"remove"`
}

type countRule struct {
	rule   Rule
	n      int
	bucket func(time.Time) string
}

type withinRule struct {
	rule   Rule
	d      Duration
	bucket func(time.Time) string
}

func (p Policy) countRules() []countRule {
	return []countRule{
		{RuleLast, p.KeepLast, nil},
		{RuleHourly, p.KeepHourly, hourBucket},
		{RuleDaily, p.KeepDaily, dayBucket},
		{RuleWeekly, p.KeepWeekly, weekBucket},
		{RuleMonthly, p.KeepMonthly, monthBucket},
		{RuleYearly, p.KeepYearly, yearBucket},
	}
}

func (p Policy) withinRules() []withinRule {
	return []withinRule{
		{RuleWithin, p.KeepWithin, nil},
		{RuleWithinHourly, p.KeepWithinHourly, hourBucket},
		{RuleWithinDaily, p.KeepWithinDaily, dayBucket},
		{RuleWithinWeekly, p.KeepWithinWeekly, weekBucket},
		{RuleWithinMonthly, p.KeepWithinMonthly, monthBucket},
		{RuleWithinYearly, p.KeepWithinYearly, yearBucket},
	}
}

// Buckets, in the time's own location.
func hourBucket(t time.Time) string  { return t.Format("2006-01-02T15") }
func dayBucket(t time.Time) string   { return t.Format("2006-01-02") }
func monthBucket(t time.Time) string { return t.Format("2006-01") }
func yearBucket(t time.Time) string  { return t.Format("2006") }
func weekBucket(t time.Time) string {
	y, w := t.ISOWeek()
	return fmt.Sprintf("%04d-W%02d", y, w)
}

// Apply groups snaps by g and applies p to each group. Groups come in the
// order of their keys.
//
// The within rules count back from the group's newest snapshot that is not
// later than now, as restic's --keep-within does, not from now itself: if
// backups stop, a forget run later does not remove the last good
// snapshots just because time passed. now only serves to ignore snapshots
// dated in the future (a wrong clock) as the reference; they are still
// subject to the rules like any other.
func Apply(snaps []*snapshot.Snapshot, p Policy, g GroupBy, now time.Time) ([]Result, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	groups := Group(snaps, g)
	res := make([]Result, 0, len(groups))
	for _, gr := range groups {
		res = append(res, applyGroup(gr, p, now, nil))
	}
	return res, nil
}

// ApplyGroup applies p to the snapshots of one group (from Group), for a
// caller that gives each group its own policy.
func ApplyGroup(gr SnapshotGroup, p Policy, now time.Time) (Result, error) {
	return ApplyGroupIn(gr, p, now, nil)
}

// ApplyGroupIn is ApplyGroup with the calendar buckets and the within
// rules' calendar durations counted in loc (a business's time zone)
// instead of each snapshot's own; nil: the snapshot's own.
func ApplyGroupIn(gr SnapshotGroup, p Policy, now time.Time, loc *time.Location) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	return applyGroup(gr, p, now, loc), nil
}

// applyGroup applies a validated p to the snapshots of one group, in loc
// (nil: each snapshot's own time zone).
func applyGroup(gr SnapshotGroup, p Policy, now time.Time, loc *time.Location) Result {
	in := func(t time.Time) time.Time {
		if loc == nil {
			return t
		}
		return t.In(loc)
	}
	list := slices.Clone(gr.Snapshots)
	slices.SortStableFunc(list, func(a, b *snapshot.Snapshot) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.ID.String(), b.ID.String())
	})
	ref := in(reference(list, now))
	res := Result{Key: gr.Key, Ref: ref}

	var counters []*counter
	for _, r := range p.countRules() {
		if r.n != 0 {
			counters = append(counters, &counter{countRule: r, left: r.n})
		}
	}
	var withins []*withinCounter
	for _, r := range p.withinRules() {
		if !r.d.Zero() {
			withins = append(withins, &withinCounter{withinRule: r, since: r.d.Before(ref), ref: ref})
		}
	}
	for nr, sn := range list {
		t := in(sn.Time)
		var keep, why []Reason
		for _, tags := range p.KeepTags {
			if hasTags(sn, tags) {
				keep = append(keep, Reason{Rule: RuleTag, Tags: tags})
			}
		}
		if len(p.KeepTags) > 0 && len(keep) == 0 {
			why = append(why, Reason{Rule: RuleTag, Detail: "has none of the keep-tag groups " + tagGroups(p.KeepTags)})
		}
		for _, c := range counters {
			r, kept := c.judge(sn, t, nr, nr == len(list)-1)
			if kept {
				keep = append(keep, r)
			} else {
				why = append(why, r)
			}
		}
		for _, w := range withins {
			r, kept := w.judge(sn, t)
			if kept {
				keep = append(keep, r)
			} else {
				why = append(why, r)
			}
		}
		if len(keep) > 0 {
			res.Keep = append(res.Keep, Decision{Snapshot: sn, Reasons: keep})
		} else {
			res.Remove = append(res.Remove, Decision{Snapshot: sn, Reasons: why})
		}
	}
	return res
}

// counter applies one count rule to a group's snapshots, newest first.
type counter struct {
	countRule
	left    int    // buckets still to keep; -1 unlimited
	started bool   // whether a snapshot was kept yet
	last    string // bucket of the last snapshot kept
	keptIn  string // short ID of that snapshot
}

// judge says whether the rule keeps sn, taken at t (its time in the zone
// buckets are counted in), the nr-th snapshot of the group (oldest if it
// is the last one), and why.
func (c *counter) judge(sn *snapshot.Snapshot, t time.Time, nr int, oldest bool) (Reason, bool) {
	b := strconv.Itoa(nr) // keep-last: every snapshot is its own bucket
	r := Reason{Rule: c.rule, Count: c.n}
	if c.bucket != nil {
		b = c.bucket(t)
		r.Bucket = b
	}
	switch {
	case c.left == 0:
		r.Detail = exhausted(c.countRule)
		return r, false
	case c.started && b == c.last && !oldest:
		r.Detail = fmt.Sprintf("%s bucket %s already keeps the newer snapshot %s", c.rule, b, c.keptIn)
		return r, false
	}
	// restic keeps the group's oldest snapshot too while the rule has
	// buckets left, even in a bucket already kept.
	r.Oldest = c.started && b == c.last
	c.started, c.last, c.keptIn = true, b, sn.ID.Short()
	if c.left > 0 {
		c.left--
	}
	return r, true
}

// withinCounter applies one within rule to a group's snapshots, newest
// first.
type withinCounter struct {
	withinRule
	ref, since time.Time
	started    bool
	last       string
	keptIn     string
}

func (w *withinCounter) judge(sn *snapshot.Snapshot, t time.Time) (Reason, bool) {
	d, since := w.d, w.since
	r := Reason{Rule: w.rule, Within: &d, Since: &since}
	if !t.After(since) {
		r.Detail = fmt.Sprintf("not within %s of the newest snapshot (%s): taken at or before %s", d, w.ref.Format(time.RFC3339), since.Format(time.RFC3339))
		return r, false
	}
	if w.bucket == nil {
		return r, true
	}
	b := w.bucket(t)
	r.Bucket = b
	if w.started && b == w.last {
		r.Detail = fmt.Sprintf("%s bucket %s already keeps the newer snapshot %s", strings.TrimPrefix(string(w.rule), "within-"), b, w.keptIn)
		return r, false
	}
	w.started, w.last, w.keptIn = true, b, sn.ID.Short()
	return r, true
}

func exhausted(r countRule) string {
	if r.rule == RuleLast {
		return fmt.Sprintf("not among the last %d snapshots", r.n)
	}
	unit := map[Rule]string{RuleHourly: "hourly", RuleDaily: "daily", RuleWeekly: "weekly", RuleMonthly: "monthly", RuleYearly: "yearly"}[r.rule]
	return fmt.Sprintf("older than the newest %d %s buckets", r.n, unit)
}

// reference is the time the within rules count back from: the newest
// snapshot not after now, or if every snapshot is in the future, now.
func reference(newestFirst []*snapshot.Snapshot, now time.Time) time.Time {
	for _, sn := range newestFirst {
		if !sn.Time.After(now) {
			return sn.Time
		}
	}
	return now
}

func hasTags(sn *snapshot.Snapshot, tags []string) bool {
	for _, t := range tags {
		if !slices.Contains(sn.Tags, t) {
			return false
		}
	}
	return true
}

func tagGroups(gs [][]string) string {
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = "[" + strings.Join(g, ",") + "]"
	}
	return strings.Join(s, " ")
}
