// Package forget removes snapshots: those a retention policy does not keep,
// or those named by ID. It decides everything first and removes only
// then, and never removes a snapshot that one of these keeps:
//
//   - its data class's floor (snapshot.Snapshot.KeepUntil, or the floor
//     the class has in the configuration now, whichever ends later);
//   - an active legal hold (internal/hold);
//   - the Object Lock retention or S3 legal hold of its snapshot object.
//
// Such a snapshot is reported as retained, with what keeps it and, where
// one is known, the date it becomes removable. Forget removes snapshot
// objects only; the data no snapshot needs any more is deleted by prune.
package forget

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/class"
	"github.com/nestguard/nestguard/internal/hold"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// Options say what Run forgets. Either IDs or a policy (Policy, or the
// classes' own) chooses the snapshots.
type Options struct {
	// Policy applies to every group of the selected snapshots. When it is
	// empty, each group uses the policy of its data class (Classes), and
	// the snapshots of a group whose class has none are kept.
	Policy policy.Policy
	// GroupBy divides the selected snapshots into groups; they are always
	// divided by data class too.
	GroupBy policy.GroupBy
	// TimeZone, if set, is the zone the policy's calendar buckets and
	// durations are counted in (policy.ApplyGroupIn); nil: each
	// snapshot's own (backups record UTC).
	TimeZone *time.Location
	// Filter and Class select the snapshots a policy applies to; the
	// others are left alone. Class "" selects every class.
	Filter snapshot.Filter
	Class  string
	// IDs names the snapshots to forget (unique ID prefixes or "latest"),
	// instead of a policy.
	IDs []string
	// Classes are the data classes of the configuration: their floors and
	// policies.
	Classes class.Set
	// DryRun decides and reports, and removes nothing.
	DryRun bool
	// Now is the time floors and retention are judged at; zero: the
	// current time.
	Now time.Time
	// KeepPITR keeps PostgreSQL recovery to any point of this long before
	// Now possible: the base backup such a window starts at (per database
	// system, walexpiry.Anchors) is kept whatever the policy or the IDs
	// say; prune keeps the WAL after it.
	KeepPITR policy.Duration
	// BeforeRemove, if set, is called with the snapshots forget is about
	// to remove, after it has decided and before it removes the first
	// (the command's audit record of what it removes). If it fails,
	// nothing is removed.
	BeforeRemove func(ctx context.Context, ids []id.ID) error
}

// Sources of a group's policy.
const (
	FromFlags = "flags" // Options.Policy
	FromClass = "class" // the group's data class
	FromIDs   = "ids"   // snapshots named by ID: no policy
	FromNone  = "none"  // no policy applies: every snapshot is kept
)

// Action is what happens to a snapshot.
type Action string

// Actions.
const (
	Keep   Action = "keep"   // a rule of the policy keeps it
	Remove Action = "remove" // nothing keeps it: removed (planned, in a dry run)
	Retain Action = "retain" // the policy or an ID would remove it, but a floor, hold or lock keeps it
)

// Kinds of Veto.
const (
	VetoFloor      = "floor"       // the data class's floor
	VetoHold       = "hold"        // an active legal hold (hold add)
	VetoObjectLock = "object-lock" // the snapshot object's Object Lock retention
	VetoLegalHold  = "legal-hold"  // an S3 legal hold on the snapshot object, with no active hold record
	VetoKeepPITR   = "keep-pitr"   // the base backup a --keep-pitr window starts at (snapshots named by ID)
)

// RuleKeepPITR is the rule of the reason a policy group keeps the base
// backup a --keep-pitr window starts at.
const RuleKeepPITR policy.Rule = "keep-pitr"

// Veto is why a snapshot that would be removed is kept.
type Veto struct {
	Kind string `json:"kind"`
	// Until is when the veto ends (floor, object-lock); zero for a hold,
	// which lasts until it is released.
	Until time.Time `json:"until,omitzero"`
	Class string    `json:"class,omitempty"` // floor: the data class
	Case  string    `json:"case,omitempty"`  // hold: the case
	Hold  string    `json:"hold,omitempty"`  // hold: the id of the record that placed it
	// Detail says it in words, with the date.
	Detail string `json:"detail"`
}

// Entry is the verdict on one snapshot.
type Entry struct {
	Snapshot *snapshot.Snapshot
	Action   Action
	// Reasons are the rules that kept the snapshot, or for one removed or
	// retained why no rule kept it; empty for snapshots named by ID and
	// in groups without a policy.
	Reasons []policy.Reason
	// Vetoes are what keeps a retained snapshot.
	Vetoes []Veto
	// Removed says the snapshot object was removed (never in a dry run);
	// Err why an attempt failed.
	Removed bool
	Err     error
	// Damaged, for a snapshot named by ID, is why its object cannot be
	// read: only its ID is known (Snapshot has nothing else), and so it
	// has no floor; holds and Object Lock still keep it.
	Damaged error
}

// Group is one group of snapshots and what was decided for it.
type Group struct {
	Key    policy.GroupKey
	Source string // FromFlags, FromClass, FromIDs or FromNone
	Policy policy.Policy
	// Ref is what the within rules counted back from (zero without a
	// policy).
	Ref     time.Time
	Entries []Entry // newest first (in the order given, for IDs)
}

// Report is what Run decided and did.
type Report struct {
	DryRun bool
	Groups []Group
	// Unreadable are the snapshot objects that could not be read: no
	// policy judged them, and they were left alone.
	Unreadable []error
}

// Count returns how many entries have action a.
func (r *Report) Count(a Action) int {
	n := 0
	for _, g := range r.Groups {
		for _, e := range g.Entries {
			if e.Action == a {
				n++
			}
		}
	}
	return n
}

// Removed returns how many snapshots were removed, or in a dry run would
// be.
func (r *Report) Removed() int {
	return r.Count(Remove) - len(r.Failed())
}

// ToRemove returns the snapshots the report removes (or in a dry run
// would), for a caller that looks at the repository without them.
func (r *Report) ToRemove() map[id.ID]bool {
	out := make(map[id.ID]bool)
	for _, g := range r.Groups {
		for _, e := range g.Entries {
			if e.Action == Remove && e.Err == nil {
				out[e.Snapshot.ID] = true
			}
		}
	}
	return out
}

// Failed returns the entries whose removal failed.
func (r *Report) Failed() []Entry {
	var out []Entry
	for _, g := range r.Groups {
		for _, e := range g.Entries {
			if e.Err != nil {
				out = append(out, e)
			}
		}
	}
	return out
}

// ErrNoPolicy is Run's error when neither IDs, nor a policy, nor a class
// with a policy says what to forget.
var ErrNoPolicy = errors.New("nothing to forget: give snapshot IDs or at least one --keep-* rule (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within[-hourly|-daily|-weekly|-monthly|-yearly], --keep-tag), or define a data class with a policy in the configuration file")

// ErrIDsAndPolicy is Run's error when IDs come with a policy or a
// selection: IDs name exactly what to forget.
var ErrIDsAndPolicy = errors.New("snapshot IDs cannot be combined with --keep-*, --host, --tag, --path or --class: IDs name exactly the snapshots to forget")

// ErrUnknownClass is in Run's error when Options.Class names a class that
// neither the configuration defines nor any snapshot carries: a misspelt
// class, which would otherwise select nothing and report success.
var ErrUnknownClass = errors.New("no snapshot in the repository has it either")

// Check reports the first problem with o that Run would refuse before
// reading anything.
func (o *Options) Check() error {
	selects := o.Filter.Host != "" || len(o.Filter.Tags) > 0 || len(o.Filter.Paths) > 0 || o.Class != ""
	if len(o.IDs) > 0 {
		if !o.Policy.Empty() || selects {
			return ErrIDsAndPolicy
		}
		return nil
	}
	if !o.Policy.Empty() {
		return o.Policy.Validate()
	}
	for _, c := range o.Classes {
		if !c.Policy.Empty() && (o.Class == "" || o.Class == c.Name) {
			return nil
		}
	}
	if o.Class != "" {
		if _, err := o.Classes.Lookup(o.Class, ""); err != nil {
			return err
		}
		return fmt.Errorf("data class %q has no policy in the configuration file: give --keep-* rules: %w", o.Class, ErrNoPolicy)
	}
	return ErrNoPolicy
}

// Run decides what to forget in repo and, unless o.DryRun, removes it.
// Nothing is removed unless every decision could be made: an unreadable
// hold record, or a retention that cannot be read, fails the run before
// any removal. The error is nil when every removal planned was done;
// snapshots retained by floors, holds or locks are in the report, not an
// error (the caller decides whether a retained snapshot named by ID is a
// failure).
func Run(ctx context.Context, repo *repository.Repository, o Options) (*Report, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	list, unreadable, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, err
	}
	records, bad, err := hold.List(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("listing legal holds: %w", err)
	}
	if len(bad) > 0 {
		return nil, unreadableHolds(bad)
	}
	rep := &Report{DryRun: o.DryRun}
	if len(o.IDs) > 0 {
		g, err := byID(list, unreadable, o.IDs)
		if err != nil {
			return nil, err
		}
		rep.Groups = []Group{g}
	} else {
		if err := checkClass(list, o); err != nil {
			return nil, err
		}
		rep.Unreadable = unreadable
		if rep.Groups, err = byPolicy(list, o, now); err != nil {
			return nil, err
		}
	}
	keepAnchors(rep, list, o.KeepPITR, now)
	v := &vetoer{repo: repo, classes: o.Classes, holds: hold.Active(records), now: now}
	for gi := range rep.Groups {
		for ei := range rep.Groups[gi].Entries {
			e := &rep.Groups[gi].Entries[ei]
			if e.Action != Remove {
				continue
			}
			if e.Vetoes, err = v.vetoes(ctx, e.Snapshot); err != nil {
				return nil, err
			}
			if len(e.Vetoes) > 0 {
				e.Action = Retain
			}
		}
	}
	if o.DryRun {
		return rep, nil
	}
	// A hold placed while forget decided: list them again just before
	// removing, so that only a hold placed during the removals themselves
	// can be missed (and on S3 with Object Lock the storage refuses
	// those).
	if records, bad, err = hold.List(ctx, repo); err != nil {
		return nil, fmt.Errorf("listing legal holds again before removing: %w", err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("listing legal holds again before removing: %w", unreadableHolds(bad))
	}
	v.holds = hold.Active(records)
	for gi := range rep.Groups {
		for ei := range rep.Groups[gi].Entries {
			if e := &rep.Groups[gi].Entries[ei]; e.Action == Remove {
				if e.Vetoes = v.holdVetoes(e.Snapshot); len(e.Vetoes) > 0 {
					e.Action = Retain
				}
			}
		}
	}
	// Before the first write (the audit record of what forget removes):
	// on a full storage the temporary files of writers killed over a
	// day ago may be what makes room for it, as for prune's lock record.
	repo.CleanStaleTemp(ctx)
	if err := beforeRemove(ctx, rep, o.BeforeRemove); err != nil {
		return rep, err
	}
	return rep, remove(ctx, repo, rep)
}

// unreadableHolds is forget's refusal when legal hold records cannot be
// read (bad, from hold.List).
func unreadableHolds(bad []error) error {
	return fmt.Errorf("%d legal hold records cannot be read, so forget cannot tell which snapshots they hold, and removes nothing: %w; %s", len(bad), errors.Join(bad...), hold.RemedyFor(bad))
}

// beforeRemove calls fn with the snapshots rep removes, if any; if it
// fails, each of them fails with it.
func beforeRemove(ctx context.Context, rep *Report, fn func(context.Context, []id.ID) error) error {
	var ids []id.ID
	for _, g := range rep.Groups {
		for _, e := range g.Entries {
			if e.Action == Remove {
				ids = append(ids, e.Snapshot.ID)
			}
		}
	}
	if fn == nil || len(ids) == 0 {
		return nil
	}
	err := fn(ctx, ids)
	if err == nil {
		return nil
	}
	for gi := range rep.Groups {
		for ei := range rep.Groups[gi].Entries {
			if e := &rep.Groups[gi].Entries[ei]; e.Action == Remove {
				e.Err = errors.New("not removed: what forget removes could not be recorded first")
			}
		}
	}
	return err
}

// byID resolves refs into one group of snapshots to remove.
func byID(list []*snapshot.Snapshot, unreadable []error, refs []string) (Group, error) {
	g := Group{Source: FromIDs}
	seen := make(map[*snapshot.Snapshot]bool)
	damagedSeen := make(map[id.ID]bool)
	for _, ref := range refs {
		sn, err := snapshot.Find(list, unreadable, ref, snapshot.Filter{})
		if err != nil {
			u := damaged(list, unreadable, ref)
			if u == nil {
				return Group{}, err
			}
			if !damagedSeen[u.ID] {
				damagedSeen[u.ID] = true
				g.Entries = append(g.Entries, Entry{Snapshot: &snapshot.Snapshot{ID: u.ID}, Action: Remove, Damaged: u.Err})
			}
			continue
		}
		if !seen[sn] {
			seen[sn] = true
			g.Entries = append(g.Entries, Entry{Snapshot: sn, Action: Remove})
		}
	}
	return g, nil
}

// damaged returns the snapshot ref names when it is the one snapshot the
// ID prefix matches and its object is damaged (repository.ErrObjectCorrupted:
// its bytes do not match its name, or do not authenticate), so that it can
// be removed by ID; nil otherwise (a read that failed for another reason
// may succeed later, and is not removed).
func damaged(list []*snapshot.Snapshot, unreadable []error, ref string) *snapshot.Unreadable {
	ref = strings.ToLower(ref)
	if ref == "latest" || len(ref) < 4 || slices.ContainsFunc(list, func(sn *snapshot.Snapshot) bool { return strings.HasPrefix(sn.ID.String(), ref) }) {
		return nil
	}
	var match *snapshot.Unreadable
	for _, e := range unreadable {
		var u *snapshot.Unreadable
		if !errors.As(e, &u) {
			return nil // cannot be attributed: it might match
		}
		if !strings.HasPrefix(u.ID.String(), ref) {
			continue
		}
		if match != nil || !errors.Is(u.Err, repository.ErrObjectCorrupted) {
			return nil
		}
		match = u
	}
	return match
}

// checkClass refuses an o.Class that neither the configuration defines
// nor a snapshot of list carries (a class since removed from the
// configuration is still one forget may select).
func checkClass(list []*snapshot.Snapshot, o Options) error {
	if o.Class == "" || o.Classes[o.Class] != nil || slices.ContainsFunc(list, func(sn *snapshot.Snapshot) bool { return sn.Class == o.Class }) {
		return nil
	}
	_, err := o.Classes.Lookup(o.Class, "")
	return fmt.Errorf("%w (and %w)", err, ErrUnknownClass)
}

// byPolicy applies the policy to the snapshots o selects.
func byPolicy(list []*snapshot.Snapshot, o Options, now time.Time) ([]Group, error) {
	var sel []*snapshot.Snapshot
	for _, sn := range list {
		if o.Filter.Match(sn) && (o.Class == "" || sn.Class == o.Class) {
			sel = append(sel, sn)
		}
	}
	gb := o.GroupBy
	gb.Class = true
	var out []Group
	for _, sg := range policy.Group(sel, gb) {
		g := Group{Key: sg.Key, Source: FromFlags, Policy: o.Policy}
		if o.Policy.Empty() {
			g.Source, g.Policy = FromNone, policy.Policy{}
			if c := o.Classes[sg.Key.Class]; c != nil && !c.Policy.Empty() {
				g.Source, g.Policy = FromClass, c.Policy
			}
		}
		if g.Source == FromNone {
			for _, sn := range newestFirst(sg.Snapshots) {
				g.Entries = append(g.Entries, Entry{Snapshot: sn, Action: Keep})
			}
			out = append(out, g)
			continue
		}
		res, err := policy.ApplyGroupIn(sg, g.Policy, now, o.TimeZone)
		if err != nil {
			return nil, err
		}
		g.Ref = res.Ref
		for _, d := range res.Keep {
			g.Entries = append(g.Entries, Entry{Snapshot: d.Snapshot, Action: Keep, Reasons: d.Reasons})
		}
		for _, d := range res.Remove {
			g.Entries = append(g.Entries, Entry{Snapshot: d.Snapshot, Action: Remove, Reasons: d.Reasons})
		}
		slices.SortStableFunc(g.Entries, func(a, b Entry) int { return b.Snapshot.Time.Compare(a.Snapshot.Time) })
		out = append(out, g)
	}
	return out, nil
}

func newestFirst(snaps []*snapshot.Snapshot) []*snapshot.Snapshot {
	out := slices.Clone(snaps)
	slices.SortStableFunc(out, func(a, b *snapshot.Snapshot) int { return b.Time.Compare(a.Time) })
	return out
}

// vetoer finds what keeps a snapshot from being removed.
type vetoer struct {
	repo    *repository.Repository
	classes class.Set
	holds   []*hold.Record
	now     time.Time
}

// vetoes returns every floor, hold and lock that keeps sn, or an error
// when the storage's retention of sn cannot be read.
func (v *vetoer) vetoes(ctx context.Context, sn *snapshot.Snapshot) ([]Veto, error) {
	var out []Veto
	if until := FloorEnd(sn, v.classes); v.now.Before(until) {
		out = append(out, Veto{Kind: VetoFloor, Until: until, Class: sn.Class,
			Detail: fmt.Sprintf("floor of data class %s: removable from %s", sn.Class, fmtTime(until))})
	}
	hv := v.holdVetoes(sn)
	out = append(out, hv...)
	held := len(hv) > 0
	l, ok := v.repo.Locker()
	if !ok {
		return out, nil
	}
	h := backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}
	ret, err := l.Retention(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("reading the retention of snapshot %s (%s): forget removes nothing while it cannot tell: %w", sn.ID.Short(), h, err)
	}
	// The store judges retention by its own clock, not by Options.Now.
	if ret.Mode != "" && time.Now().Before(ret.Until) {
		out = append(out, Veto{Kind: VetoObjectLock, Until: ret.Until,
			Detail: fmt.Sprintf("Object Lock (%s) retains the snapshot object until %s: removable from then", strings.ToLower(string(ret.Mode)), fmtTime(ret.Until))})
	}
	if ret.LegalHold && !held {
		out = append(out, Veto{Kind: VetoLegalHold,
			Detail: "the snapshot object is under an S3 legal hold that no active hold record explains (set outside nestguard, or a release that did not finish: see 'nestguard hold list')"})
	}
	return out, nil
}

// holdVetoes returns the active holds on sn.
func (v *vetoer) holdVetoes(sn *snapshot.Snapshot) []Veto {
	var out []Veto
	for _, r := range v.holds {
		if r.Snapshot == sn.ID {
			out = append(out, Veto{Kind: VetoHold, Case: r.Case, Hold: r.ID.String(),
				Detail: fmt.Sprintf("legal hold of case %s (placed %s by %s@%s): removable only after 'nestguard hold release %s --case %s'",
					r.Case, fmtTime(r.Time), r.User, r.Host, sn.ID.Short(), r.Case)})
		}
	}
	return out
}

// FloorEnd is when sn stops being protected by its data class's floor:
// the later of the floor recorded in sn (KeepUntil) and the floor its
// class has in classes now, counted from sn's time. It is zero for a
// snapshot without a class or floor.
func FloorEnd(sn *snapshot.Snapshot, classes class.Set) time.Time {
	until := sn.KeepUntil
	if c := classes[sn.Class]; sn.Class != "" && c != nil && !c.Floor.Zero() {
		if t := c.KeepUntil(sn.Time); t.After(until) {
			until = t
		}
	}
	return until
}

// remove removes the snapshots rep plans to remove, every one even when
// one fails, and returns the failures.
func remove(ctx context.Context, repo *repository.Repository, rep *Report) error {
	var errs []error
	for gi := range rep.Groups {
		for ei := range rep.Groups[gi].Entries {
			e := &rep.Groups[gi].Entries[ei]
			if e.Action != Remove {
				continue
			}
			if err := ctx.Err(); err != nil {
				return errors.Join(append(errs, err)...)
			}
			h := backend.Handle{Type: backend.SnapshotFile, Name: e.Snapshot.ID.String()}
			if err := repo.Backend().Remove(ctx, h); err != nil && !errors.Is(err, fs.ErrNotExist) {
				e.Err = fmt.Errorf("removing snapshot %s: %w", e.Snapshot.ID.Short(), err)
				errs = append(errs, e.Err)
				continue
			}
			e.Removed = true
		}
	}
	return errors.Join(errs...)
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// keepAnchors keeps the base backups a --keep-pitr window of d starts at
// (among all the snapshots of the repository): in a policy group as a
// kept snapshot with the keep-pitr rule as its reason, among snapshots
// named by ID as a retained one.
func keepAnchors(rep *Report, all []*snapshot.Snapshot, d policy.Duration, now time.Time) {
	anchors := walexpiry.Anchors(all, walexpiry.Options{KeepPITR: d, Now: now})
	if len(anchors) == 0 {
		return
	}
	isAnchor := make(map[*snapshot.Snapshot]bool, len(anchors))
	for _, a := range anchors {
		isAnchor[a.Snapshot] = true
	}
	why := walexpiry.AnchorReason(d)
	for gi := range rep.Groups {
		g := &rep.Groups[gi]
		for ei := range g.Entries {
			e := &g.Entries[ei]
			if e.Action != Remove || !isAnchor[e.Snapshot] {
				continue
			}
			if g.Source == FromIDs {
				e.Action = Retain
				e.Vetoes = append(e.Vetoes, Veto{Kind: VetoKeepPITR, Detail: why})
				continue
			}
			e.Action = Keep
			e.Reasons = []policy.Reason{{Rule: RuleKeepPITR, Detail: why}}
		}
	}
}
