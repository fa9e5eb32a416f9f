package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/prune"
)

// intentLog is what these tests read of 'audit log --json'.
type intentLog struct {
	Records []struct {
		Position     uint64   `json:"position"`
		Command      string   `json:"command"`
		Outcome      string   `json:"outcome"`
		Message      string   `json:"message"`
		Intent       []string `json:"intent"`
		IntentRecord *uint64  `json:"intent_record"`
		Wrote        []string `json:"wrote"`
	} `json:"records"`
	Unfinished []uint64 `json:"unfinished"`
}

func (e *env) intentLog() intentLog {
	e.t.Helper()
	out := e.must("audit", "log", "--json")
	var doc intentLog
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		e.t.Fatalf("audit log --json: %v\n%s", err, out)
	}
	return doc
}

// killedAt runs args in e with env set (a test hook) and checks that the
// command was killed by it.
func killedAt(t *testing.T, e *env, env string, args ...string) {
	t.Helper()
	c := e.cmd(args...)
	c.Env = append(c.Env, env)
	r := execute(t, c)
	if r.code != -1 || !strings.Contains(c.ProcessState.String(), "killed") {
		t.Fatalf("%s was not killed (%s): exit %d (%v)\n%s%s", strings.Join(args, " "), env, r.code, c.ProcessState, r.stdout, r.stderr)
	}
}

// threeSnapshots makes a repository in e with three snapshots and returns
// their ids.
func threeSnapshots(t *testing.T, e *env) []string {
	t.Helper()
	e.must("init")
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	for _, s := range []string{"one", "two", "three"} {
		os.WriteFile(filepath.Join(src, "f"), []byte(s), 0o644)
		e.must("backup", src)
	}
	return e.snapshotIDs()
}

// TestAuditForgetKilledLeavesStarted (hostile s46 F5): a forget killed
// after it decided leaves a Started record naming the snapshots it was
// about to remove, which 'audit log' shows as unfinished; a forget that
// finishes appends exactly one record more than before, its outcome
// naming its Started record.
func TestAuditForgetKilledLeavesStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ids := threeSnapshots(t, e)
	before := len(e.intentLog().Records)
	killedAt(t, e, "NESTGUARD_TEST_AUDIT_AT=intent:kill", "forget", "--keep-last", "1")
	doc := e.intentLog()
	if len(doc.Records) != before+1 {
		t.Fatalf("%d records after the killed forget, want %d", len(doc.Records), before+1)
	}
	last := doc.Records[len(doc.Records)-1]
	if last.Command != "forget" || last.Outcome != "started" || len(last.Intent) != 2 {
		t.Fatalf("the killed forget's record: %+v", last)
	}
	for _, w := range last.Intent {
		sid, ok := strings.CutPrefix(w, "-snapshots/")
		if !ok || !slices.Contains(ids, sid) {
			t.Errorf("intent %q: not a removal of one of the snapshots %v", w, ids)
		}
	}
	if !slices.Equal(doc.Unfinished, []uint64{last.Position}) {
		t.Errorf("unfinished %v, want [%d]", doc.Unfinished, last.Position)
	}
	if out := e.must("audit", "log"); !strings.Contains(out, "UNFINISHED") || !strings.Contains(out, "about to remove: -snapshots/") {
		t.Errorf("audit log does not show the unfinished forget:\n%s", out)
	}

	// A forget that finishes: Started, then its outcome naming it.
	e.must("forget", "--keep-last", "1")
	doc = e.intentLog()
	if len(doc.Records) != before+3 {
		t.Fatalf("%d records after a forget that finished, want %d", len(doc.Records), before+3)
	}
	start, end := doc.Records[before+1], doc.Records[before+2]
	if start.Outcome != "started" || len(start.Intent) != 2 || end.Outcome != "success" ||
		end.IntentRecord == nil || *end.IntentRecord != start.Position || len(end.Wrote) != 2 {
		t.Fatalf("forget's records: %+v, %+v", start, end)
	}
	if len(doc.Unfinished) != 1 {
		t.Errorf("unfinished %v: only the killed forget is", doc.Unfinished)
	}
	// A forget that removes nothing appends one record, as before.
	e.must("forget", "--keep-last", "1")
	if n := len(e.intentLog().Records); n != before+4 {
		t.Errorf("%d records after a forget that removed nothing, want %d", n, before+4)
	}
}

// TestAuditPruneKilledLeavesStarted (hostile s46 F5): a prune killed
// while it deletes packs leaves its Started record (with the candidate
// record it wrote) and no outcome.
func TestAuditPruneKilledLeavesStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	pruneHistory(t, e, filepath.Join(e.dir, "src"))
	before := len(e.intentLog().Records)
	killedAt(t, e, "NESTGUARD_TEST_PRUNE_AT="+prune.PointPacksDeleting+":kill", "prune", "--grace", "0")
	doc := e.intentLog()
	if len(doc.Records) != before+1 {
		t.Fatalf("%d records after the killed prune, want %d", len(doc.Records), before+1)
	}
	last := doc.Records[len(doc.Records)-1]
	if last.Command != "prune" || last.Outcome != "started" || len(last.Intent) != 1 ||
		!slices.ContainsFunc(last.Wrote, func(w string) bool { return strings.HasPrefix(w, "candidates/") }) {
		t.Fatalf("the killed prune's record: %+v", last)
	}
	if !slices.Equal(doc.Unfinished, []uint64{last.Position}) {
		t.Errorf("unfinished %v, want [%d]", doc.Unfinished, last.Position)
	}
}

// TestAuditKeyRemoveAndHoldReleaseStarted (hostile s46 F5): key remove
// and hold release record what they are about to remove first.
func TestAuditKeyRemoveAndHoldReleaseStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ids := threeSnapshots(t, e)
	pf := filepath.Join(e.dir, "newpass")
	os.WriteFile(pf, []byte("second secret passphrase\n"), 0o600)
	e.must("key", "add", "--new-password-file", pf)
	var keys []struct {
		ID      string `json:"id"`
		Current bool   `json:"current"`
	}
	json.Unmarshal([]byte(e.must("key", "list", "--json")), &keys)
	var other string
	for _, k := range keys {
		if !k.Current {
			other = k.ID
		}
	}
	killedAt(t, e, "NESTGUARD_TEST_AUDIT_AT=intent:kill", "key", "remove", other)
	e.must("key", "remove", other)
	e.must("hold", "add", ids[0], "--case", "C-1", "--reason", "test", "--record-only")
	e.must("hold", "release", ids[0], "--case", "C-1", "--reason", "closed")
	doc := e.intentLog()
	var got []string
	for _, r := range doc.Records {
		got = append(got, r.Command+":"+r.Outcome+":"+strings.Join(r.Intent, ","))
	}
	got = got[len(got)-6:]
	want := []string{"key remove:started:-keys/" + other, "key remove:started:-keys/" + other, "key remove:success:",
		"hold add:success:", "hold release:started:hold of snapshot " + ids[0] + " case C-1", "hold release:success:"}
	if !slices.Equal(got, want) {
		t.Fatalf("records\n%q\nwant\n%q", got, want)
	}
	if len(doc.Unfinished) != 1 {
		t.Errorf("unfinished %v: want the killed key remove alone", doc.Unfinished)
	}
}

// readOnlyAudit makes e's audit/ refuse writes while the rest of the
// repository takes them: a read-only bind mount as root, mode 0555
// otherwise.
func readOnlyAudit(t *testing.T, e *env) {
	t.Helper()
	dir := filepath.Join(e.repo, "audit")
	if os.Getuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return
	}
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot bind-mount audit/ in CI: %v %s", err, out)
		}
		t.Skipf("cannot bind-mount audit/ here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remounting audit/ read-only: %v %s", err, out)
	}
}

// TestAuditReadOnlyAuditDir (hostile s46 F6): when only audit/ refuses
// writes, forget removes nothing and exits 1, and backup and prune exit 1
// naming the audit failure; a command that changed nothing (snapshots)
// still exits 0 with a warning.
func TestAuditReadOnlyAuditDir(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	pruneHistory(t, e, src)
	e.must("backup", src)
	ids := e.snapshotIDs()
	readOnlyAudit(t, e)

	r := e.run("forget", "--keep-last", "1")
	if r.code != exitError || !strings.Contains(r.stderr, "audit") || !strings.Contains(r.stderr, "removes nothing") || !strings.Contains(r.stderr, "no snapshot was removed") {
		t.Errorf("forget with audit/ read-only: exit %d\n%s", r.code, r.stderr)
	}
	if left := e.snapshotIDs(); len(left) != len(ids) {
		t.Errorf("forget with audit/ read-only removed snapshots: %d left of %d", len(left), len(ids))
	}
	r = e.run("prune", "--grace", "0")
	if r.code != exitError || !strings.Contains(r.stderr, "audit") {
		t.Errorf("prune with audit/ read-only: exit %d\n%s", r.code, r.stderr)
	}
	os.WriteFile(filepath.Join(src, "more"), []byte("more"), 0o644)
	r = e.run("backup", src)
	if r.code != exitError || !strings.Contains(r.stderr, "refuses its audit record") {
		t.Errorf("backup with audit/ read-only: exit %d\n%s", r.code, r.stderr)
	}
	r = e.run("snapshots")
	if r.code != 0 || !strings.Contains(r.stderr, "refuses writes") {
		t.Errorf("snapshots with audit/ read-only: exit %d\n%s", r.code, r.stderr)
	}
}
