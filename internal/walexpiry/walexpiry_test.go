package walexpiry

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/snapshot"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// seg names segment no of timeline tli (16 MiB segments).
func seg(tli uint32, no uint64) string { return pgmeta.Segment{TLI: tli, No: no}.Name(16 << 20) }

// base is a base backup of system sys on timeline tli from segment start
// to stop, started at hour h after t0 and ending a minute later.
type base struct {
	name        string
	sys         uint64
	tli         uint32
	start, stop uint64
	h           int
}

func (b base) snapshot() *snapshot.Snapshot {
	start := t0.Add(time.Duration(b.h) * time.Hour)
	bi := pgmeta.BackupInfo{SystemID: b.sys, Timeline: b.tli, StartWAL: seg(b.tli, b.start), StopWAL: seg(b.tli, b.stop),
		StartTime: start, StopTime: start.Add(time.Minute), WALSegmentSize: 16 << 20}
	extra, _ := json.Marshal(bi)
	return &snapshot.Snapshot{ID: id.Hash([]byte(b.name)), Kind: snapshot.KindPostgres, Time: start, Extra: extra}
}

func snaps(bs ...base) []*snapshot.Snapshot {
	var out []*snapshot.Snapshot
	for _, b := range bs {
		out = append(out, b.snapshot())
	}
	return out
}

// wal lists segments first..last of timeline tli, and the extra names.
func wal(tli uint32, first, last uint64, extra ...string) []string {
	var out []string
	for no := first; no <= last; no++ {
		out = append(out, seg(tli, no))
	}
	return append(out, extra...)
}

func infos(names []string) []backend.FileInfo {
	var out []backend.FileInfo
	for i, n := range names {
		out = append(out, backend.FileInfo{Name: n, Size: 100, ModTime: t0.Add(time.Duration(i) * time.Minute)})
	}
	return out
}

func names(os []Object) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.Name)
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestCompute(t *testing.T) {
	a := base{"a", 7, 1, 10, 11, 0}  // oldest
	b := base{"b", 7, 1, 20, 21, 24} // a day later
	c := base{"c", 7, 1, 30, 32, 48}
	d := base{"d", 7, 1, 40, 40, 72}
	now := t0.Add(80 * time.Hour)
	day := policy.Duration{Days: 1}
	tests := []struct {
		name     string
		snaps    []*snapshot.Snapshot
		wal      []string
		keep     policy.Duration
		remove   []string // the rest stays
		roles    map[string]string
		short    bool
		note     string
		reasonIn map[string]string // a name's reason contains
	}{
		{
			name:  "no window: everything before the oldest kept base backup goes",
			snaps: snaps(b, c), wal: wal(1, 5, 45, "00000002.history", seg(1, 20)+".00000028.backup", seg(1, 12)+".00000060.backup"),
			remove: append(wal(1, 5, 19), seg(1, 12)+".00000060.backup"),
			roles:  map[string]string{"b": RoleAnchor, "c": RoleWindow},
			reasonIn: map[string]string{seg(1, 5): "older than the start of the oldest kept base backup, " + id.Hash([]byte("b")).Short(),
				seg(1, 25): "in the PITR window: WAL from base backup " + id.Hash([]byte("b")).Short(), "00000002.history": "timeline history"},
		},
		{
			name:  "keep-pitr: archive-only backups keep start to stop",
			snaps: snaps(a, b, c, d), wal: wal(1, 5, 45), keep: policy.Duration{Days: 1, Hours: 7}, // cutoff: hour 49, c ended at 48:01
			remove: slices.Concat(wal(1, 5, 9), wal(1, 12, 19), wal(1, 22, 29)),
			roles:  map[string]string{"a": RoleArchiveOnly, "b": RoleArchiveOnly, "c": RoleAnchor, "d": RoleWindow},
			reasonIn: map[string]string{seg(1, 11): "WAL of archive-only base backup " + id.Hash([]byte("a")).Short(),
				seg(1, 15): "before the PITR window (from base backup " + id.Hash([]byte("c")).Short(), seg(1, 30): "--keep-pitr 1d7h window"},
		},
		{
			name:  "keep-pitr: the anchor ended at or before the cutoff, not after",
			snaps: snaps(a, b, c, d), wal: wal(1, 5, 45), keep: policy.Duration{Days: 1, Hours: 8}, // cutoff: hour 48, c ended at 48:01
			remove: slices.Concat(wal(1, 5, 9), wal(1, 12, 19)),
			roles:  map[string]string{"a": RoleArchiveOnly, "b": RoleAnchor, "c": RoleWindow, "d": RoleWindow},
		},
		{
			name:  "keep-pitr longer than the oldest kept backup: the window is short",
			snaps: snaps(b, c), wal: wal(1, 5, 45), keep: policy.Duration{Days: 10},
			remove: wal(1, 5, 19), short: true,
			roles: map[string]string{"b": RoleAnchor, "c": RoleWindow},
		},
		{
			name: "no base backup kept: nothing goes", snaps: nil, wal: wal(1, 1, 9, "00000002.history"), keep: day,
			note: NoBaseBackup,
		},
		{
			name: "file snapshots are no base backups", snaps: []*snapshot.Snapshot{{ID: id.Hash([]byte("f")), Kind: snapshot.KindFiles}},
			wal: wal(1, 1, 3), note: NoBaseBackup,
		},
		{
			name: "timelines: a span keeps every timeline's segments in it, history files stay",
			// Timeline 2 branched in segment 11 (inside a's span); b is on timeline 2.
			snaps:  snaps(base{"a", 7, 1, 10, 11, 0}, base{"b", 7, 2, 20, 21, 24}, base{"c", 7, 2, 30, 30, 48}),
			wal:    slices.Concat(wal(1, 5, 12), wal(2, 11, 35), []string{"00000002.history", "00000003.history", seg(1, 12) + ".partial", seg(2, 25) + ".partial"}),
			keep:   policy.Duration{Days: 1, Hours: 7},
			remove: slices.Concat(wal(1, 5, 9), wal(1, 12, 12), wal(2, 12, 19), wal(2, 22, 29), []string{seg(1, 12) + ".partial", seg(2, 25) + ".partial"}),
			roles:  map[string]string{"a": RoleArchiveOnly, "b": RoleArchiveOnly, "c": RoleAnchor},
			reasonIn: map[string]string{seg(2, 11): "archive-only base backup " + id.Hash([]byte("a")).Short(),
				"00000003.history": "timeline history"},
		},
		{
			name: "several systems: an object goes only when no system needs it",
			// System 7 (old, upgraded away) in segments 10..40, system 9 from 50 on.
			snaps: snaps(base{"a", 7, 1, 10, 11, 0}, base{"b", 7, 1, 20, 21, 24}, base{"x", 9, 1, 50, 51, 60}, base{"y", 9, 1, 60, 61, 70}),
			wal:   wal(1, 1, 65), keep: policy.Duration{Hours: 12}, // cutoff hour 68: anchors b (7) and x (9)
			remove: slices.Concat(wal(1, 1, 9), wal(1, 12, 19)),
			roles:  map[string]string{"a": RoleArchiveOnly, "b": RoleAnchor, "x": RoleAnchor, "y": RoleWindow},
			reasonIn: map[string]string{seg(1, 5): "system 7: older than the start of the oldest kept base backup",
				seg(1, 15): "system 9: older than the start of the oldest kept base backup, " + id.Hash([]byte("x")).Short()},
		},
		{
			name: "names that are not WAL file names stay", snaps: snaps(c), wal: []string{seg(1, 1), "garbage", seg(1, 1) + ".tmp"},
			remove: []string{seg(1, 1)}, roles: map[string]string{"c": RoleAnchor},
			reasonIn: map[string]string{"garbage": "not a WAL file name"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compute(tc.snaps, infos(tc.wal), Options{KeepPITR: tc.keep, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := names(p.Remove), sorted(tc.remove); !slices.Equal(got, want) {
				t.Errorf("removed %v\nwant     %v", got, want)
			}
			if got, want := len(p.Keep)+len(p.Remove), len(tc.wal); got != want {
				t.Errorf("%d objects decided, %d listed", got, want)
			}
			if p.Note != tc.note {
				t.Errorf("note %q, want %q", p.Note, tc.note)
			}
			roles := map[string]string{}
			for _, s := range p.Systems {
				if s.Short != tc.short {
					t.Errorf("system %d: short %v, want %v", s.ID, s.Short, tc.short)
				}
				for _, b := range s.Backups {
					for _, n := range []string{"a", "b", "c", "d", "x", "y"} {
						if b.Snapshot == id.Hash([]byte(n)) {
							roles[n] = b.Role
						}
					}
				}
			}
			if tc.roles == nil {
				tc.roles = map[string]string{}
			}
			if fmt.Sprint(roles) != fmt.Sprint(tc.roles) {
				t.Errorf("roles %v, want %v", roles, tc.roles)
			}
			all := append(slices.Clone(p.Keep), p.Remove...)
			for name, want := range tc.reasonIn {
				i := slices.IndexFunc(all, func(o Object) bool { return o.Name == name })
				if i < 0 || !strings.Contains(all[i].Reason, want) {
					t.Errorf("%s: reason %q, want it to contain %q", name, all[i].Reason, want)
				}
			}
			for _, o := range all {
				if o.Reason == "" {
					t.Errorf("%s: no reason", o.Name)
				}
			}
		})
	}
}

// A kept base backup whose details cannot be read stops the plan: what
// it needs is unknown.
func TestComputeRefusesUnreadableBackup(t *testing.T) {
	bad := []*snapshot.Snapshot{
		{ID: id.Hash([]byte("1")), Kind: snapshot.KindPostgres, Extra: json.RawMessage(`{`)},
		{ID: id.Hash([]byte("2")), Kind: snapshot.KindPostgres, Extra: json.RawMessage(`{"start_wal":""}`)},
		{ID: id.Hash([]byte("3")), Kind: snapshot.KindPostgres, Extra: json.RawMessage(`{"start_wal":"000000010000000000000005","stop_wal":"000000010000000000000004"}`)},
	}
	for _, sn := range bad {
		p, err := Compute([]*snapshot.Snapshot{sn, base{"ok", 1, 1, 1, 1, 0}.snapshot()}, infos(wal(1, 0, 3)), Options{Now: t0})
		if err == nil || !strings.Contains(err.Error(), sn.ID.Short()) || !strings.Contains(err.Error(), "no WAL can be removed") {
			t.Errorf("%s: plan %v, error %v", sn.Extra, p, err)
		}
	}
}

func TestAnchors(t *testing.T) {
	all := snaps(base{"a", 7, 1, 10, 11, 0}, base{"b", 7, 1, 20, 21, 24}, base{"c", 7, 1, 30, 31, 48},
		base{"x", 9, 1, 50, 51, 30}, base{"y", 9, 1, 60, 61, 60})
	now := t0.Add(72 * time.Hour)
	bad := &snapshot.Snapshot{ID: id.Hash([]byte("bad")), Kind: snapshot.KindPostgres, Extra: json.RawMessage(`{`)}
	got := Anchors(append(all, bad), Options{KeepPITR: policy.Duration{Days: 1, Hours: 12}, Now: now}) // cutoff hour 36
	want := []Anchor{{7, all[1]}, {9, all[3]}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("anchors %v, want %v", got, want)
	}
	if got := Anchors(all, Options{Now: now}); len(got) != 0 {
		t.Errorf("anchors without --keep-pitr: %v", got)
	}
	if got := Anchors(all, Options{KeepPITR: policy.Duration{Days: 30}, Now: now}); len(got) != 0 {
		t.Errorf("anchors when every backup ended after the cutoff: %v", got)
	}
	// The anchor Anchors picks is the one Compute's window starts at
	// once forget kept it.
	kept := []*snapshot.Snapshot{all[0], all[1], all[4], all[3]}
	p, err := Compute(kept, nil, Options{KeepPITR: policy.Duration{Days: 1, Hours: 12}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range p.Systems {
		if s.Anchor.Snapshot != want[i].Snapshot.ID {
			t.Errorf("system %d: Compute's anchor %s, Anchors' %s", s.ID, s.Anchor.Snapshot.Short(), want[i].Snapshot.ID.Short())
		}
	}
}

// TestComputeKeepsRecentWAL: a second database system whose first base
// backup is still running has archived segments 1-3 in the last hours;
// the kept base backup of the first system starts at segment 20. Without
// ArchivedAfter they would go as older than the oldest kept base backup;
// within prune's grace period they stay, and older ones still go.
func TestComputeKeepsRecentWAL(t *testing.T) {
	now := t0.Add(100 * time.Hour)
	old := infos(wal(1, 5, 19))
	recent := infos(wal(1, 1, 3))
	for i := range recent {
		recent[i].ModTime = now.Add(-time.Hour)
	}
	all := append(slices.Clone(old), recent...)
	b := base{"b", 7, 1, 20, 21, 24}
	p, err := Compute(snaps(b), all, Options{Now: now, ArchivedAfter: now.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(p.Remove), sorted(wal(1, 5, 19)); !slices.Equal(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
	for _, o := range p.Keep {
		if !strings.Contains(o.Reason, "within prune's grace period") {
			t.Errorf("%s kept for %q", o.Name, o.Reason)
		}
	}
	p, err = Compute(snaps(b), all, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Remove) != len(all) {
		t.Fatalf("without ArchivedAfter %d of %d removed", len(p.Remove), len(all))
	}
}
