package forget

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/class"
	"github.com/nestguard/nestguard/internal/hold"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/retention/locktest"
	"github.com/nestguard/nestguard/internal/snapshot"
)

var ctx = context.Background()

// day is noon UTC of 2026-03-d.
func day(d int) time.Time { return time.Date(2026, 3, d, 12, 0, 0, 0, time.UTC) }

// save stores a snapshot of host h taken at t, with class c and floor end
// until (both optional) and tags.
func save(t *testing.T, repo *repository.Repository, at time.Time, c string, until time.Time, tags ...string) *snapshot.Snapshot {
	t.Helper()
	sn := &snapshot.Snapshot{Time: at, Kind: snapshot.KindFiles, Paths: []string{"/srv"}, Hostname: "db1",
		Tree: id.Hash([]byte("tree")), Class: c, KeepUntil: until, Tags: tags}
	if err := snapshot.Save(ctx, repo, sn); err != nil {
		t.Fatal(err)
	}
	return sn
}

// remaining returns the times (day of March) of the snapshots left.
func remaining(t *testing.T, repo *repository.Repository) []int {
	t.Helper()
	list, bad, err := snapshot.List(ctx, repo)
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	var out []int
	for _, sn := range list {
		out = append(out, sn.Time.Day())
	}
	return out
}

func entry(t *testing.T, rep *Report, sn *snapshot.Snapshot) Entry {
	t.Helper()
	for _, g := range rep.Groups {
		for _, e := range g.Entries {
			if e.Snapshot.ID == sn.ID {
				return e
			}
		}
	}
	t.Fatalf("snapshot %s not in the report", sn.ID.Short())
	return Entry{}
}

func TestPolicyDryRunAndRemove(t *testing.T) {
	repo := repotest.New(t)
	for d := 1; d <= 6; d++ {
		save(t, repo, day(d), "", time.Time{})
	}
	o := Options{Policy: policy.Policy{KeepLast: 2}, GroupBy: policy.DefaultGroupBy, DryRun: true, Now: day(10)}
	rep, err := Run(ctx, repo, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(Keep) != 2 || rep.Count(Remove) != 4 || rep.Count(Retain) != 0 {
		t.Errorf("dry run: keep %d remove %d retain %d", rep.Count(Keep), rep.Count(Remove), rep.Count(Retain))
	}
	if got := remaining(t, repo); len(got) != 6 {
		t.Fatalf("dry run removed snapshots: %v left", got)
	}
	o.DryRun = false
	if rep, err = Run(ctx, repo, o); err != nil {
		t.Fatal(err)
	}
	if got := remaining(t, repo); !slices.Equal(got, []int{5, 6}) {
		t.Errorf("left %v, want [5 6]", got)
	}
	for _, e := range rep.Groups[0].Entries {
		if (e.Action == Remove) != e.Removed {
			t.Errorf("%s: action %s, removed %v", e.Snapshot.Time, e.Action, e.Removed)
		}
		if len(e.Reasons) == 0 {
			t.Errorf("%s: no reasons", e.Snapshot.Time)
		}
	}
}

func TestFloors(t *testing.T) {
	repo := repotest.New(t)
	classes := class.Set{
		"fin":  {Name: "fin", Floor: policy.Duration{Days: 7}},
		"logs": {Name: "logs", Floor: policy.Duration{Days: 2}},
	}
	old := save(t, repo, day(1), "fin", day(8))    // floor ended on the 8th
	young := save(t, repo, day(5), "fin", day(12)) // floor ends on the 12th
	// Recorded under a 2-day floor, but the class's floor is now 7 days:
	// the longer wins.
	grown := save(t, repo, day(4), "logs", day(6))
	classes["logs"].Floor = policy.Duration{Days: 7}
	// Recorded under a long floor that the configuration shortened since:
	// the recorded one still holds.
	shrunk := save(t, repo, day(3), "logs", day(20))
	// A class the configuration no longer defines: its recorded floor holds.
	gone := save(t, repo, day(2), "gone", day(30))
	keep := save(t, repo, day(9), "fin", day(16), "keep")

	// The policy keeps only the tagged snapshot; the floors keep others.
	rep, err := Run(ctx, repo, Options{Policy: policy.Policy{KeepTags: [][]string{{"keep"}}}, Classes: classes, Now: day(10)})
	if err != nil {
		t.Fatal(err)
	}
	check := func(sn *snapshot.Snapshot, a Action, until time.Time) {
		t.Helper()
		e := entry(t, rep, sn)
		if e.Action != a {
			t.Errorf("snapshot of day %d: %s, want %s (%+v)", sn.Time.Day(), e.Action, a, e.Vetoes)
			return
		}
		if a != Retain {
			return
		}
		if len(e.Vetoes) != 1 || e.Vetoes[0].Kind != VetoFloor || !e.Vetoes[0].Until.Equal(until) || e.Vetoes[0].Class != sn.Class ||
			!strings.Contains(e.Vetoes[0].Detail, until.Format(time.RFC3339)) || !strings.Contains(e.Vetoes[0].Detail, sn.Class) {
			t.Errorf("snapshot of day %d: vetoes %+v, want the floor of %s until %s", sn.Time.Day(), e.Vetoes, sn.Class, until)
		}
	}
	check(keep, Keep, time.Time{})
	check(old, Remove, time.Time{})
	check(young, Retain, day(12))
	check(grown, Retain, day(11))
	check(shrunk, Retain, day(20))
	check(gone, Retain, day(30))
	if got := remaining(t, repo); !slices.Equal(got, []int{2, 3, 4, 5, 9}) {
		t.Errorf("left %v", got)
	}

	// Named by ID: the floor holds all the same.
	rep, err = Run(ctx, repo, Options{IDs: []string{young.ID.String()[:8], keep.ID.String()}, Classes: classes, Now: day(10)})
	if err != nil {
		t.Fatal(err)
	}
	if e := entry(t, rep, young); e.Action != Retain || e.Removed {
		t.Errorf("young snapshot named by ID: %+v", e)
	}
	if e := entry(t, rep, keep); e.Action != Retain {
		t.Errorf("newest snapshot named by ID: %+v", e)
	}
	// Once the floor has passed, an ID removes it.
	if _, err = Run(ctx, repo, Options{IDs: []string{young.ID.String()}, Classes: classes, Now: day(12)}); err != nil {
		t.Fatal(err)
	}
	if got := remaining(t, repo); !slices.Equal(got, []int{2, 3, 4, 9}) {
		t.Errorf("left %v", got)
	}
}

func TestClassPolicies(t *testing.T) {
	repo := repotest.New(t)
	classes := class.Set{
		"fin":  {Name: "fin", Policy: policy.Policy{KeepLast: 2}},
		"logs": {Name: "logs"},
	}
	for d := 1; d <= 4; d++ {
		save(t, repo, day(d), "fin", time.Time{})
		save(t, repo, day(d).Add(time.Hour), "logs", time.Time{})
		save(t, repo, day(d).Add(2*time.Hour), "", time.Time{})
	}
	if _, err := Run(ctx, repo, Options{Classes: class.Set{"logs": classes["logs"]}}); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("no policy anywhere: %v", err)
	}
	if _, err := Run(ctx, repo, Options{Class: "logs", Classes: classes}); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("--class without a policy: %v", err)
	}
	rep, err := Run(ctx, repo, Options{GroupBy: policy.DefaultGroupBy, Classes: classes, Now: day(10)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Groups) != 3 {
		t.Fatalf("%d groups, want one per class and one without", len(rep.Groups))
	}
	for _, g := range rep.Groups {
		want := map[string]string{"fin": FromClass, "logs": FromNone, "": FromNone}[g.Key.Class]
		if g.Source != want {
			t.Errorf("group %s: policy from %s, want %s", g.Key, g.Source, want)
		}
	}
	if rep.Count(Remove) != 2 || rep.Count(Keep) != 10 {
		t.Errorf("keep %d remove %d", rep.Count(Keep), rep.Count(Remove))
	}
	// Flags replace the classes' policies; --class selects.
	rep, err = Run(ctx, repo, Options{Policy: policy.Policy{KeepLast: 1}, Class: "logs", Classes: classes, Now: day(10)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Groups) != 1 || rep.Groups[0].Key.Class != "logs" || rep.Count(Remove) != 3 {
		t.Errorf("--class logs --keep-last 1: %d groups, %d removed", len(rep.Groups), rep.Count(Remove))
	}
}

func TestHolds(t *testing.T) {
	repo := repotest.New(t)
	a := save(t, repo, day(1), "", time.Time{})
	b := save(t, repo, day(2), "", time.Time{})
	save(t, repo, day(3), "", time.Time{})
	add := func(sn *snapshot.Snapshot, c, action string) {
		if err := hold.Save(ctx, repo, &hold.Record{Snapshot: sn.ID, Case: c, Reason: "r", User: "u", Host: "h", Time: time.Now(), Action: action}); err != nil {
			t.Fatal(err)
		}
	}
	add(a, "SEC-1", hold.ActionAdd)
	add(a, "SEC-2", hold.ActionAdd)
	add(b, "SEC-3", hold.ActionAdd)
	time.Sleep(time.Millisecond)
	add(b, "SEC-3", hold.ActionRelease)
	rep, err := Run(ctx, repo, Options{Policy: policy.Policy{KeepLast: 1}})
	if err != nil {
		t.Fatal(err)
	}
	e := entry(t, rep, a)
	if e.Action != Retain || len(e.Vetoes) != 2 || e.Vetoes[0].Kind != VetoHold || e.Vetoes[0].Case != "SEC-1" || e.Vetoes[1].Case != "SEC-2" ||
		!strings.Contains(e.Vetoes[0].Detail, "hold release") {
		t.Errorf("held snapshot: %+v", e)
	}
	if e := entry(t, rep, b); e.Action != Remove || !e.Removed {
		t.Errorf("snapshot whose hold was released: %+v", e)
	}
	if got := remaining(t, repo); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("left %v", got)
	}

	// A hold record that cannot be read might hold anything: nothing goes.
	if err := repo.Backend().Save(ctx, backend.Handle{Type: backend.HoldFile, Name: strings.Repeat("ab", 32)}, strings.NewReader("garbage"), 7); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, repo, Options{IDs: []string{"latest"}}); err == nil || !strings.Contains(err.Error(), "hold records cannot be read") {
		t.Errorf("with an unreadable hold record: %v", err)
	}
	if got := remaining(t, repo); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("left %v", got)
	}
}

func TestObjectLock(t *testing.T) {
	be := locktest.New(true)
	repo := repotest.New(t, repotest.Backend(be), repotest.ObjectLock(&repository.ObjectLock{Mode: repository.LockGovernance, MinRetention: time.Hour}))
	a := save(t, repo, time.Now().Add(-2*time.Hour), "", time.Time{})
	save(t, repo, time.Now().Add(-time.Hour), "", time.Time{})
	start := time.Now()
	rep, err := Run(ctx, repo, Options{Policy: policy.Policy{KeepLast: 1}})
	if err != nil {
		t.Fatal(err)
	}
	e := entry(t, rep, a)
	if e.Action != Retain || len(e.Vetoes) != 1 || e.Vetoes[0].Kind != VetoObjectLock || e.Vetoes[0].Until.Before(start.Add(59*time.Minute)) ||
		!strings.Contains(e.Vetoes[0].Detail, "until") {
		t.Fatalf("locked snapshot: %+v", e)
	}
	// A legal hold set on the storage alone (no hold record) keeps a
	// snapshot too.
	be = locktest.New(true)
	repo = repotest.New(t, repotest.Backend(be))
	a = save(t, repo, day(1), "", time.Time{})
	if err := be.SetLegalHold(ctx, backend.Handle{Type: backend.SnapshotFile, Name: a.ID.String()}, true); err != nil {
		t.Fatal(err)
	}
	rep, err = Run(ctx, repo, Options{IDs: []string{a.ID.String()}})
	if err != nil {
		t.Fatal(err)
	}
	if e := entry(t, rep, a); e.Action != Retain || len(e.Vetoes) != 1 || e.Vetoes[0].Kind != VetoLegalHold || e.Removed {
		t.Errorf("snapshot under an S3 legal hold: %+v", e)
	}
}

func TestOptionsCheck(t *testing.T) {
	for _, o := range []Options{
		{IDs: []string{"abcd"}, Policy: policy.Policy{KeepLast: 1}},
		{IDs: []string{"abcd"}, Filter: snapshot.Filter{Host: "h"}},
		{IDs: []string{"abcd"}, Class: "fin"},
	} {
		if err := o.Check(); !errors.Is(err, ErrIDsAndPolicy) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if err := (&Options{}).Check(); !errors.Is(err, ErrNoPolicy) || !strings.Contains(err.Error(), "--keep-daily") {
		t.Errorf("no policy: %v", err)
	}
	if err := (&Options{Class: "nope", Classes: class.Set{"fin": {Name: "fin"}}}).Check(); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown class: %v", err)
	}
	if err := (&Options{Policy: policy.Policy{KeepDaily: -3}}).Check(); err == nil {
		t.Error("invalid policy accepted")
	}
}

// failingRemove refuses to remove one object, as a store might.
type failingRemove struct {
	*mem.Backend
	name string
}

func (b *failingRemove) Remove(ctx context.Context, h backend.Handle) error {
	if h.Name == b.name {
		return errors.New("access denied")
	}
	return b.Backend.Remove(ctx, h)
}

func TestRemoveFails(t *testing.T) {
	be := &failingRemove{Backend: mem.New()}
	repo := repotest.New(t, repotest.Backend(be))
	var snaps []*snapshot.Snapshot
	for d := 1; d <= 4; d++ {
		snaps = append(snaps, save(t, repo, day(d), "", time.Time{}))
	}
	be.name = snaps[1].ID.String()
	rep, err := Run(ctx, repo, Options{Policy: policy.Policy{KeepLast: 1}})
	if err == nil || !strings.Contains(err.Error(), snaps[1].ID.Short()) || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("a removal the store refuses: %v", err)
	}
	if e := entry(t, rep, snaps[1]); e.Err == nil || e.Removed {
		t.Errorf("failed entry: %+v", e)
	}
	// The others are removed all the same.
	if got := remaining(t, repo); !slices.Equal(got, []int{2, 4}) {
		t.Errorf("left %v", got)
	}
	if rep.Removed() != 2 || len(rep.Failed()) != 1 {
		t.Errorf("removed %d, failed %d", rep.Removed(), len(rep.Failed()))
	}
}

// TestDamagedByID: a snapshot object that is damaged (its bytes do not
// match its name) stops every prune until it is gone, and prune says to
// forget it: naming it by ID removes it, unless a hold keeps it. Nothing
// of it can be read, so it has no floor; a policy never touches it.
func TestDamagedByID(t *testing.T) {
	repo := repotest.New(t)
	a := save(t, repo, day(1), "", time.Time{})
	b := save(t, repo, day(2), "", time.Time{})
	save(t, repo, day(3), "", time.Time{})
	damage := func(sn *snapshot.Snapshot) {
		h := backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}
		if err := repo.Backend().Remove(ctx, h); err != nil {
			t.Fatal(err)
		}
		if err := repo.Backend().Save(ctx, h, strings.NewReader("garbage"), 7); err != nil {
			t.Fatal(err)
		}
	}
	damage(a)
	damage(b)
	if err := hold.Save(ctx, repo, &hold.Record{Snapshot: b.ID, Case: "SEC-1", Reason: "r", User: "u", Host: "h", Time: time.Now(), Action: hold.ActionAdd}); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, repo, Options{IDs: []string{a.ID.Short(), b.ID.String()}})
	if err != nil {
		t.Fatal(err)
	}
	if e := rep.Groups[0].Entries[0]; e.Snapshot.ID != a.ID || e.Action != Remove || !e.Removed || e.Damaged == nil {
		t.Errorf("damaged snapshot named by ID: %+v", e)
	}
	if e := rep.Groups[0].Entries[1]; e.Snapshot.ID != b.ID || e.Action != Retain || len(e.Vetoes) != 1 || e.Vetoes[0].Kind != VetoHold {
		t.Errorf("damaged snapshot under a hold: %+v", e)
	}
	_, bad, err := snapshot.List(ctx, repo)
	if err != nil || len(bad) != 1 || !strings.Contains(bad[0].Error(), b.ID.Short()) {
		t.Errorf("after: %v, %v", bad, err)
	}
	// 'latest' never means a damaged snapshot.
	if _, err := Run(ctx, repo, Options{IDs: []string{"latest"}, DryRun: true}); err == nil {
		t.Error("latest with a damaged snapshot: no error")
	}
}
