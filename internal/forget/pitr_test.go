package forget

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// saveBase stores a base backup of system 7 taken on day d, its WAL in
// segment d.
func saveBase(t *testing.T, repo *repository.Repository, d int) *snapshot.Snapshot {
	t.Helper()
	seg := pgmeta.Segment{TLI: 1, No: uint64(d)}.Name(16 << 20)
	extra, _ := json.Marshal(pgmeta.BackupInfo{SystemID: 7, Timeline: 1, StartWAL: seg, StopWAL: seg,
		StartTime: day(d), StopTime: day(d).Add(time.Minute), WALSegmentSize: 16 << 20})
	sn := &snapshot.Snapshot{Time: day(d), Kind: snapshot.KindPostgres, Paths: []string{"/var/lib/postgresql"}, Hostname: "db1",
		Tree: id.Hash([]byte("tree")), Extra: extra}
	if err := snapshot.Save(ctx, repo, sn); err != nil {
		t.Fatal(err)
	}
	return sn
}

// --keep-pitr keeps the base backup its window starts at, whatever the
// policy says (as a kept snapshot, with the keep-pitr rule) or the IDs
// (as a retained one); without it the policy alone decides.
func TestKeepPITRAnchor(t *testing.T) {
	repo := repotest.New(t)
	var bs []*snapshot.Snapshot
	for d := 1; d <= 6; d++ {
		bs = append(bs, saveBase(t, repo, d))
	}
	// Day 10, --keep-pitr 6d: the window must reach day 4 noon; the base
	// backup of day 3 is the newest that ended before.
	o := Options{Policy: policy.Policy{KeepLast: 2}, GroupBy: policy.DefaultGroupBy, DryRun: true, Now: day(10), KeepPITR: policy.Duration{Days: 6}}
	rep, err := Run(ctx, repo, o)
	if err != nil {
		t.Fatal(err)
	}
	e := entry(t, rep, bs[2])
	if e.Action != Keep || len(e.Reasons) != 1 || e.Reasons[0].Rule != RuleKeepPITR || !strings.Contains(e.Reasons[0].String(), "keep-pitr anchor") {
		t.Errorf("anchor: %s %+v", e.Action, e.Reasons)
	}
	if rep.Count(Keep) != 3 || rep.Count(Remove) != 3 {
		t.Errorf("keep %d remove %d, want 3 and 3", rep.Count(Keep), rep.Count(Remove))
	}
	o.KeepPITR = policy.Duration{}
	if rep, err = Run(ctx, repo, o); err != nil {
		t.Fatal(err)
	}
	if e := entry(t, rep, bs[2]); e.Action != Remove {
		t.Errorf("without --keep-pitr the day 3 backup is %s", e.Action)
	}

	o = Options{IDs: []string{bs[2].ID.String(), bs[1].ID.String()}, Now: day(10), KeepPITR: policy.Duration{Days: 6}}
	if rep, err = Run(ctx, repo, o); err != nil {
		t.Fatal(err)
	}
	if e := entry(t, rep, bs[2]); e.Action != Retain || len(e.Vetoes) != 1 || e.Vetoes[0].Kind != VetoKeepPITR {
		t.Errorf("anchor named by ID: %s %+v", e.Action, e.Vetoes)
	}
	got := remaining(t, repo)
	slices.Sort(got)
	if !slices.Equal(got, []int{1, 3, 4, 5, 6}) {
		t.Errorf("left %v", got)
	}
}
