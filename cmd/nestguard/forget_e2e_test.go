package main

// End-to-end tests of forget: policies, data classes and their floors,
// legal holds, through the binary against a local repository (Object Lock:
// s3_lock_test.go).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// forgetDoc is what 'forget --json' prints (docs/json.md).
type forgetDoc struct {
	DryRun   bool `json:"dry_run"`
	Kept     int  `json:"kept"`
	Removed  int  `json:"removed"`
	Retained int  `json:"retained"`
	Failed   int  `json:"failed"`
	Groups   []struct {
		Group struct {
			Host  string   `json:"host"`
			Paths []string `json:"paths"`
			Class string   `json:"class"`
		} `json:"group"`
		PolicyFrom string `json:"policy_from"`
		Snapshots  []struct {
			ID        string    `json:"id"`
			Time      time.Time `json:"time"`
			Class     string    `json:"class"`
			KeepUntil time.Time `json:"keep_until"`
			Action    string    `json:"action"`
			Removed   bool      `json:"removed"`
			Reasons   []struct {
				Rule   string `json:"rule"`
				Bucket string `json:"bucket"`
				Detail string `json:"detail"`
			} `json:"reasons"`
			Vetoes []struct {
				Kind   string    `json:"kind"`
				Until  time.Time `json:"until"`
				Class  string    `json:"class"`
				Case   string    `json:"case"`
				Detail string    `json:"detail"`
			} `json:"vetoes"`
		} `json:"snapshots"`
	} `json:"groups"`
}

func (e *env) forgetJSON(args ...string) forgetDoc {
	e.t.Helper()
	out := e.must(append([]string{"forget", "--json"}, args...)...)
	var d forgetDoc
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		e.t.Fatalf("forget --json: %v\n%s", err, out)
	}
	return d
}

// snapshotTimes maps each snapshot's ID to its time, as 'snapshots' lists
// them.
func (e *env) snapshotTimes(args ...string) map[string]time.Time {
	e.t.Helper()
	var list []struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal([]byte(e.must(append([]string{"snapshots", "--json"}, args...)...)), &list); err != nil {
		e.t.Fatal(err)
	}
	out := make(map[string]time.Time)
	for _, s := range list {
		out[s.ID] = s.Time
	}
	return out
}

// backupAt backs up src as if at the time ts, with more flags, and returns
// the snapshot's ID.
func (e *env) backupAt(src, ts string, flags ...string) string {
	e.t.Helper()
	return e.backupJSON(append([]string{src, "--time", ts}, flags...)...)["snapshot"].(string)
}

func TestForgetPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 41, 10, 20_000)
	// Twelve days of backups at 02:00 UTC, and a second one on the last
	// day: several snapshots in one daily bucket.
	var ids []string
	for d := 1; d <= 12; d++ {
		writeFile(t, filepath.Join(src, "day"), fmt.Sprint(d), 0o644)
		ids = append(ids, e.backupAt(src, fmt.Sprintf("2026-03-%02dT02:00:00Z", d)))
	}
	ids = append(ids, e.backupAt(src, "2026-03-12T14:00:00Z"))

	if r := e.run("forget"); r.code != 2 || !strings.Contains(r.stderr, "--keep-last") || !strings.Contains(r.stderr, "--keep-within") {
		t.Errorf("forget without a policy: exit %d: %s", r.code, r.stderr)
	}
	if r := e.run("forget", ids[0], "--keep-last", "1"); r.code != 2 {
		t.Errorf("forget with IDs and a policy: exit %d: %s", r.code, r.stderr)
	}
	if r := e.run("forget", "--keep-within", "35 days"); r.code != 2 || !strings.Contains(r.stderr, "35 days") {
		t.Errorf("forget with a bad duration: exit %d: %s", r.code, r.stderr)
	}

	// keep-daily 3 keeps the newest of each of the 12th, 11th and 10th;
	// keep-weekly 2 the newest of ISO weeks 11 (the 12th) and 10 (the
	// 8th, a Sunday).
	policy := []string{"--keep-daily", "3", "--keep-weekly", "2"}
	before := e.snapshotTimes()
	dry := e.forgetJSON(append(policy, "--dry-run")...)
	if after := e.snapshotTimes(); len(after) != len(before) {
		t.Fatalf("--dry-run removed %d snapshots", len(before)-len(after))
	}
	want := map[string]bool{ids[12]: true, ids[10]: true, ids[9]: true, ids[7]: true}
	if !dry.DryRun || dry.Kept != 4 || dry.Removed != 9 || dry.Retained != 0 || len(dry.Groups) != 1 || dry.Groups[0].PolicyFrom != "flags" {
		t.Fatalf("dry run: %+v", dry)
	}
	for _, s := range dry.Groups[0].Snapshots {
		if (s.Action == "keep") != want[s.ID] || s.Removed || len(s.Reasons) == 0 {
			t.Errorf("dry run: %s (%s): %s %+v", s.ID[:8], s.Time, s.Action, s.Reasons)
		}
	}
	if s := dry.Groups[0].Snapshots[1]; s.ID != ids[11] || s.Action != "remove" || !strings.Contains(s.Reasons[0].Detail, "2026-03-12 already keeps the newer snapshot "+ids[12][:8]) {
		t.Errorf("second snapshot of the 12th: %+v", s)
	}

	txt := e.must(append([]string{"forget"}, policy...)...)
	for _, w := range []string{"keep", "removed", "daily snapshot (2026-03-12)", "weekly snapshot (2026-W10)", "older than the newest 3 daily buckets", "4 kept, 9 removed, 0 retained"} {
		if !strings.Contains(txt, w) {
			t.Errorf("forget output lacks %q:\n%s", w, txt)
		}
	}
	left := e.snapshotTimes()
	if len(left) != len(want) {
		t.Errorf("%d snapshots left, want %d", len(left), len(want))
	}
	for id := range want {
		if _, ok := left[id]; !ok {
			t.Errorf("snapshot %s was removed", id[:8])
		}
	}
	e.must("verify")

	// By ID; an unknown ID changes nothing.
	if r := e.run("forget", ids[7], "ffffffff"); r.code != 1 || !strings.Contains(r.stderr, "ffffffff") {
		t.Errorf("forget of an unknown ID: exit %d: %s", r.code, r.stderr)
	}
	if len(e.snapshotTimes()) != 4 {
		t.Error("a forget that failed removed something")
	}
	if out := e.must("forget", ids[7][:8]); !strings.Contains(out, "removed") {
		t.Errorf("forget by ID:\n%s", out)
	}
	if _, ok := e.snapshotTimes()[ids[7]]; ok {
		t.Error("snapshot named by ID still there")
	}
}

func TestForgetClassesAndHolds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	cfg := filepath.Join(e.dir, "nestguard.toml")
	writeFile(t, cfg, `
[class.financial-records]
floor      = "7y"
keep-daily = 2

[class.logs]
floor = "1d"
`, 0o600)
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 42, 5, 10_000)
	fin := func(ts string) string { return e.backupAt(src, ts, "--config", cfg, "--class", "financial-records") }
	f1, f2, f3 := fin("2026-01-10T10:00:00Z"), fin("2026-01-11T10:00:00Z"), fin("2026-01-12T10:00:00Z")
	l1 := e.backupAt(src, "2026-01-10T11:00:00Z", "--config", cfg, "--class", "logs")
	l2 := e.backupAt(src, "2026-01-11T11:00:00Z", "--config", cfg, "--class", "logs")
	plain := e.backupAt(src, "2026-01-10T12:00:00Z")

	if r := e.run("--config", cfg, "backup", src, "--class", "financial"); r.code != 2 || !strings.Contains(r.stderr, `unknown data class "financial"`) ||
		!strings.Contains(r.stderr, "financial-records, logs") {
		t.Errorf("backup --class of an unknown class: exit %d: %s", r.code, r.stderr)
	}
	if r := e.run("backup", src, "--class", "logs"); r.code != 2 || !strings.Contains(r.stderr, "defines no classes") {
		t.Errorf("backup --class without a config file: exit %d: %s", r.code, r.stderr)
	}
	if n := len(e.snapshotTimes()); n != 6 {
		t.Fatalf("%d snapshots, want 6 (refused backups saved one?)", n)
	}

	// The class's policy, with no --keep-* flag: financial-records keeps 2
	// daily snapshots, and its 7-year floor keeps the third; logs and the
	// snapshot without a class have no policy and are kept.
	d := e.forgetJSON("--config", cfg)
	byID := map[string]string{}
	for _, g := range d.Groups {
		for _, s := range g.Snapshots {
			byID[s.ID] = s.Action
			if s.ID == f1 {
				if g.PolicyFrom != "class" || g.Group.Class != "financial-records" {
					t.Errorf("group of %s: %+v", f1[:8], g)
				}
				wantUntil := time.Date(2033, 1, 10, 10, 0, 0, 0, time.UTC)
				if s.Class != "financial-records" || !s.KeepUntil.Equal(wantUntil) || len(s.Vetoes) != 1 || s.Vetoes[0].Kind != "floor" ||
					!s.Vetoes[0].Until.Equal(wantUntil) || !strings.Contains(s.Vetoes[0].Detail, "2033-01-10T10:00:00Z") {
					t.Errorf("retained by its floor: %+v", s)
				}
			}
		}
	}
	if byID[f1] != "retain" || byID[f2] != "keep" || byID[f3] != "keep" || byID[l1] != "keep" || byID[l2] != "keep" || byID[plain] != "keep" {
		t.Errorf("actions %v", byID)
	}
	if len(e.snapshotTimes()) != 6 {
		t.Error("a retained snapshot was removed")
	}

	// Flags replace the class's policy, never its floor; the logs' 1-day
	// floor has long ended.
	txt := e.must("--config", cfg, "forget", "--keep-last", "1")
	for _, w := range []string{"class financial-records", "floor of data class financial-records: removable from 2033-01-11T10:00:00Z", "class logs"} {
		if !strings.Contains(txt, w) {
			t.Errorf("forget output lacks %q:\n%s", w, txt)
		}
	}
	left := e.snapshotTimes()
	for _, id := range []string{f1, f2, f3, l2, plain} {
		if _, ok := left[id]; !ok {
			t.Errorf("snapshot %s removed", id[:8])
		}
	}
	if _, ok := left[l1]; ok {
		t.Errorf("old logs snapshot %s kept", l1[:8])
	}

	// Named by ID: refused with exit 4, naming the snapshot, its class
	// and the date; the config file's floor counts even where the
	// snapshot recorded none (the plain one has no class: removable).
	r := e.run("--config", cfg, "forget", f2[:8])
	if r.code != 4 || !strings.Contains(r.stderr, f2[:8]) || !strings.Contains(r.stderr, "financial-records") || !strings.Contains(r.stderr, "2033-01-11T10:00:00Z") {
		t.Errorf("forget of a floored snapshot by ID: exit %d: %s", r.code, r.stderr)
	}
	// Without the config file, the floor recorded in the snapshot holds.
	if r := e.run("forget", f3[:8]); r.code != 4 || !strings.Contains(r.stderr, "2033-01-12T10:00:00Z") {
		t.Errorf("forget of a floored snapshot without the config: exit %d: %s", r.code, r.stderr)
	}

	// A legal hold: never forgotten, the case named; released, it goes.
	e.must("hold", "add", plain[:8], "--case", "SEC-2026-7", "--reason", "inquiry", "--record-only")
	r = e.run("forget", plain[:8], l2[:8])
	if r.code != 4 || !strings.Contains(r.stderr, "SEC-2026-7") || !strings.Contains(r.stderr, plain[:8]) || strings.Contains(r.stderr, l2[:8]) {
		t.Errorf("forget of a held snapshot: exit %d: %s", r.code, r.stderr)
	}
	left = e.snapshotTimes()
	if _, ok := left[plain]; !ok {
		t.Error("held snapshot removed")
	}
	if _, ok := left[l2]; ok {
		t.Error("the snapshot named beside the held one was not removed")
	}
	// A policy that keeps nothing: every snapshot is held or floored, and
	// the run succeeds, reporting them.
	if d := e.forgetJSON("--keep-tag", "no-such-tag"); d.Retained != 4 || d.Kept != 0 || d.Removed != 0 {
		t.Errorf("policy run over held and floored snapshots (exit 0): %+v", d)
	}
	e.must("hold", "release", plain[:8], "--case", "SEC-2026-7", "--reason", "closed")
	e.must("forget", plain[:8])
	if _, ok := e.snapshotTimes()[plain]; ok {
		t.Error("snapshot whose hold was released not removed")
	}
}

// TestForgetPrune: forget --prune deletes the data only the removed
// snapshots needed (--grace 0: in the same run), and what is kept still
// verifies and restores.
func TestForgetPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	writeTree(t, filepath.Join(src, "gone"), 61, 20, 200_000)
	e.backupAt(src, "2026-03-01T02:00:00Z")
	if err := os.RemoveAll(filepath.Join(src, "gone")); err != nil {
		t.Fatal(err)
	}
	writeTree(t, filepath.Join(src, "kept"), 62, 20, 200_000)
	e.backupAt(src, "2026-03-02T02:00:00Z")

	if r := e.run("forget", "--keep-last", "1", "--prune", "--max-unused", "lots"); r.code != 2 || len(e.snapshotTimes()) != 2 {
		t.Errorf("forget --prune with a bad --max-unused: exit %d, %d snapshots left: %s", r.code, len(e.snapshotTimes()), r.stderr)
	}
	// A dry run prunes as if the snapshots were gone, changing nothing.
	files := repoFiles(t, e.repo)
	out := e.must("forget", "--keep-last", "1", "--prune", "--dry-run", "--grace", "0")
	for _, w := range []string{"prune, as if the snapshots above were removed", "would delete "} {
		if !strings.Contains(out, w) {
			t.Errorf("forget --prune --dry-run does not say %q:\n%s", w, out)
		}
	}
	if len(e.snapshotTimes()) != 2 || !slices.Equal(files, repoFiles(t, e.repo)) {
		t.Errorf("forget --prune --dry-run changed the repository")
	}

	type doc struct {
		Removed int `json:"removed"`
		Prune   *struct {
			DryRun  bool `json:"dry_run"`
			Deleted struct {
				Packs int   `json:"packs"`
				Bytes int64 `json:"bytes"`
			} `json:"deleted"`
			Errors []string `json:"errors"`
		} `json:"prune"`
	}
	var dry, d doc
	out = e.must("forget", "--keep-last", "1", "--prune", "--grace", "0", "--json", "--dry-run")
	if err := json.Unmarshal([]byte(out), &dry); err != nil || dry.Prune == nil || !dry.Prune.DryRun {
		t.Fatalf("forget --prune --dry-run --json: %v\n%s", err, out)
	}
	out = e.must("forget", "--keep-last", "1", "--prune", "--grace", "0", "--json")
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("forget --prune --json: %v\n%s", err, out)
	}
	if d.Removed != 1 || d.Prune == nil || d.Prune.Deleted.Packs == 0 || d.Prune.Deleted.Bytes < 100_000 || len(d.Prune.Errors) != 0 {
		t.Fatalf("forget --prune: %s", out)
	}
	if dry.Prune.Deleted != d.Prune.Deleted {
		t.Errorf("the dry run would delete %+v, the prune deleted %+v", dry.Prune.Deleted, d.Prune.Deleted)
	}
	e.must("verify", "--read-data")
	tgt := filepath.Join(e.dir, "restore")
	e.must("restore", "latest", "--target", tgt)
	compareTrees(t, src, filepath.Join(tgt, src))
	// Nothing left to delete.
	if out := e.must("forget", "--keep-last", "1", "--prune", "--grace", "0"); !strings.Contains(out, "deleted 0 packs") {
		t.Errorf("second forget --prune:\n%s", out)
	}
}

// TestForgetDamagedSnapshot: a damaged snapshot object stops prune, whose
// error says to forget it by ID; forget does, and prune then runs, and
// what the other snapshots need restores.
func TestForgetDamagedSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// No local copy of the snapshot, which would serve it (TestSnapshotCopies).
	e.extraEnv = append(e.extraEnv, "NESTGUARD_NO_CACHE=true")
	e.must("init")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 71, 10, 50_000)
	bad := e.backupAt(src, "2026-03-01T02:00:00Z")
	writeFile(t, filepath.Join(src, "new"), "new", 0o644)
	e.backupAt(src, "2026-03-02T02:00:00Z")
	p := filepath.Join(e.repo, "snapshots", bad)
	flipByte(t, p)
	if r := e.run("prune", "--grace", "0"); r.code != 1 || !strings.Contains(r.stderr, "'nestguard forget ID'") {
		t.Fatalf("prune with a damaged snapshot: exit %d: %s", r.code, r.stderr)
	}
	if out := e.must("forget", bad[:8]); !strings.Contains(out, "damaged snapshot object") || !strings.Contains(out, "1 removed") {
		t.Errorf("forget of the damaged snapshot:\n%s", out)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("the damaged snapshot object is still there: %v", err)
	}
	e.must("prune", "--grace", "0")
	e.must("verify", "--read-data")
	tgt := filepath.Join(e.dir, "restore")
	e.must("restore", "latest", "--target", tgt)
	compareTrees(t, src, filepath.Join(tgt, src))
}

// TestForgetRulesThatKeepNothing: --keep-* rules given only as 0 (or 0d)
// are no policy; forget must refuse them rather than fall back to the
// data classes' own policies (which remove snapshots the user did not ask
// about). A --class that neither the config file nor any snapshot knows is
// refused too, as a misspelt class, not "0 kept, 0 removed"; a class the
// config file no longer defines but snapshots still carry is fine.
func TestForgetRulesThatKeepNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	old := filepath.Join(e.dir, "old.toml")
	writeFile(t, old, "[class.audit]\nfloor = \"1d\"\n", 0o600)
	cfg := filepath.Join(e.dir, "nestguard.toml")
	writeFile(t, cfg, "[class.logs]\nfloor = \"1d\"\nkeep-last = 1\n", 0o600)
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 43, 3, 5_000)
	for _, ts := range []string{"2026-01-10T10:00:00Z", "2026-01-11T10:00:00Z"} {
		e.backupAt(src, ts, "--config", cfg, "--class", "logs")
		e.backupAt(src, ts, "--config", old, "--class", "audit")
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--keep-last", "0"}, []string{"--keep-last 0", "keeps no snapshot"}},
		{[]string{"--keep-within", "0d", "--keep-daily", "0", "--dry-run"}, []string{"--keep-daily 0", "--keep-within 0d"}},
		{[]string{"--keep-last", "1", "--class", "log"}, []string{`unknown data class "log"`, "logs"}},
	} {
		r := e.run(append([]string{"--config", cfg, "forget"}, c.args...)...)
		if r.code != 2 {
			t.Errorf("forget %q: exit %d, want 2: %s%s", c.args, r.code, r.stdout, r.stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("forget %q: stderr lacks %q: %s", c.args, w, r.stderr)
			}
		}
		if n := len(e.snapshotTimes()); n != 4 {
			t.Fatalf("forget %q: %d snapshots left, want 4", c.args, n)
		}
	}
	// audit is no longer in the config file, but two snapshots carry it.
	d := e.forgetJSON("--config", cfg, "--class", "audit", "--keep-last", "1")
	if d.Removed != 1 || d.Kept != 1 {
		t.Errorf("forget --class of a class only snapshots carry: %+v", d)
	}
}

// TestForgetGroupsFiltersAndZones: --group-by, --host/--tag/--path and the
// snapshot's own time zone, through the binary (internal/policy has the
// table tests; this checks the flags reach it and the zone survives the
// snapshot object).
func TestForgetGroupsFiltersAndZones(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 44, 3, 5_000)
	// Host a: the newest, at 23:00 UTC on 03-01; one at 00:30+02:00 on
	// 03-02 (22:30 UTC on 03-01); one on 02-27. In each snapshot's own
	// zone they are three days, so keep-daily 2 keeps the two newest; by
	// UTC days it would keep 23:00 and 02-27 instead.
	a1 := e.backupAt(src, "2026-02-27T10:00:00Z", "--host", "a", "--tag", "x")
	a2 := e.backupAt(src, "2026-03-02T00:30:00+02:00", "--host", "a", "--tag", "y")
	a3 := e.backupAt(src, "2026-03-01T23:00:00Z", "--host", "a", "--tag", "x")
	b1 := e.backupAt(src, "2026-02-20T10:00:00Z", "--host", "b", "--tag", "x")
	b2 := e.backupAt(src, "2026-02-21T10:00:00Z", "--host", "b", "--tag", "y")

	actions := func(d forgetDoc) map[string]string {
		m := map[string]string{}
		for _, g := range d.Groups {
			for _, s := range g.Snapshots {
				m[s.ID] = s.Action
			}
		}
		return m
	}
	check := func(what string, d forgetDoc, groups int, want map[string]string) {
		t.Helper()
		got := actions(d)
		if len(d.Groups) != groups || len(got) != len(want) {
			t.Errorf("%s: %d groups, %d snapshots, want %d and %d: %v", what, len(d.Groups), len(got), groups, len(want), got)
		}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("%s: snapshot %s: %q, want %q", what, id[:8], got[id], w)
			}
		}
	}
	check("--keep-daily 2 --host a", e.forgetJSON("--keep-daily", "2", "--host", "a", "--dry-run"), 1,
		map[string]string{a3: "keep", a2: "keep", a1: "remove"})
	check("--group-by tags", e.forgetJSON("--keep-last", "1", "--group-by", "tags", "--dry-run"), 2,
		map[string]string{a3: "keep", a1: "remove", b1: "remove", a2: "keep", b2: "remove"})
	check(`--group-by ""`, e.forgetJSON("--keep-last", "1", "--group-by", "", "--dry-run"), 1,
		map[string]string{a3: "keep", a2: "remove", a1: "remove", b2: "remove", b1: "remove"})
	check("--tag y --path", e.forgetJSON("--keep-last", "1", "--tag", "y", "--path", src, "--group-by", "", "--dry-run"), 1,
		map[string]string{a2: "keep", b2: "remove"})
	if r := e.run("forget", "--keep-last", "1", "--group-by", "host,colour"); r.code != 2 || !strings.Contains(r.stderr, `"colour"`) {
		t.Errorf("--group-by with an unknown field: exit %d: %s", r.code, r.stderr)
	}
	// For real: host b's group keeps its newest only.
	d := e.forgetJSON("--keep-last", "1", "--host", "b")
	if d.Removed != 1 {
		t.Errorf("forget --host b: %+v", d)
	}
	left := e.snapshotTimes()
	if _, ok := left[b1]; ok || len(left) != 4 {
		t.Errorf("after forget --host b --keep-last 1: %d snapshots left, %s there: %v", len(left), b1[:8], ok)
	}
	// The zone is the snapshot's own: 00:30+02:00 stays that.
	if _, off := left[a2].Zone(); off != 2*3600 {
		t.Errorf("snapshot %s time %s: zone offset %d, want +02:00", a2[:8], left[a2], off)
	}
}

// TestForgetIDsBesideConfigPolicy: a policy or selection in the config
// file's [forget] section is the default for policy runs; it does not
// make every 'forget ID' a usage error. Given on the command line, it
// still is one.
func TestForgetIDsBesideConfigPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	cfg := filepath.Join(e.dir, "nestguard.toml")
	writeFile(t, cfg, "[forget]\nkeep-last = 2\nhost = \"vm\"\n", 0o600)
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 45, 3, 5_000)
	a := e.backupAt(src, "2026-01-10T10:00:00Z", "--host", "vm")
	e.backupAt(src, "2026-01-11T10:00:00Z", "--host", "vm")
	if r := e.run("--config", cfg, "forget", "--keep-last", "1", a[:8]); r.code != 2 || !strings.Contains(r.stderr, "cannot be combined") {
		t.Errorf("forget ID --keep-last 1: exit %d: %s", r.code, r.stderr)
	}
	if r := e.run("--config", cfg, "forget", a[:8]); r.code != 0 || !strings.Contains(r.stdout, "removed") {
		t.Errorf("forget ID with a [forget] policy in the config file: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if _, ok := e.snapshotTimes()[a]; ok {
		t.Errorf("snapshot %s not removed", a[:8])
	}
	if d := e.forgetJSON("--config", cfg, "--dry-run"); d.Kept != 1 || len(d.Groups) != 1 || d.Groups[0].PolicyFrom != "flags" {
		t.Errorf("forget with the config file's policy: %+v", d)
	}
}

// TestForgetTimeZone: backups record UTC; --time-zone counts the calendar
// buckets in a business's zone: the month-end backup at 22:00 on 03-31 in
// New York (02:00 UTC on 04-01) is March's there.
func TestForgetTimeZone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 46, 3, 5_000)
	c := e.backupAt(src, "2026-04-30T02:00:00Z")
	a := e.backupAt(src, "2026-04-01T02:00:00Z")
	b := e.backupAt(src, "2026-03-30T02:00:00Z")
	kept := func(args ...string) []string {
		t.Helper()
		var ids []string
		for _, g := range e.forgetJSON(append([]string{"--keep-monthly", "2", "--dry-run"}, args...)...).Groups {
			for _, s := range g.Snapshots {
				if s.Action == "keep" {
					ids = append(ids, s.ID)
				}
			}
		}
		return ids
	}
	if got := kept(); !slices.Equal(got, []string{c, b}) {
		t.Errorf("UTC months: kept %v, want %s %s", got, c[:8], b[:8])
	}
	if got := kept("--time-zone", "America/New_York"); !slices.Equal(got, []string{c, a}) {
		t.Errorf("New York months: kept %v, want %s %s", got, c[:8], a[:8])
	}
	if r := e.run("forget", "--keep-monthly", "2", "--time-zone", "Mars/Olympus_Mons"); r.code != 2 || !strings.Contains(r.stderr, "Mars/Olympus_Mons") {
		t.Errorf("forget --time-zone of no zone: exit %d: %s", r.code, r.stderr)
	}
	if n := len(e.snapshotTimes()); n != 3 {
		t.Errorf("%d snapshots left, want 3", n)
	}
}
