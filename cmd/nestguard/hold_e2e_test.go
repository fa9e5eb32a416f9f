package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A damaged hold record blocks forget, which points at it; verify reports
// it as damage (text and JSON), and hold list exits 3 naming it, with the
// way out: restore it from a copy, never delete it.
func TestDamagedHoldRecordIsReportedEverywhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	writeRandom(t, filepath.Join(src, "f"), 1<<20, 4621)
	e.must("init")
	e.must("backup", src)
	ids := e.snapshotIDs()
	e.must("hold", "add", ids[0], "--case", "C1", "--reason", "r", "--record-only")
	holds, _ := filepath.Glob(filepath.Join(e.repo, "holds", "*"))
	if len(holds) != 1 {
		t.Fatalf("%d hold records", len(holds))
	}
	obj := "holds/" + filepath.Base(holds[0])
	flipByte(t, holds[0])

	r := e.run("forget", "--keep-last", "1")
	if r.code != 1 {
		t.Fatalf("forget with a damaged hold record: exit %d, want 1\n%s", r.code, r.stderr)
	}
	for _, want := range []string{obj, "restore the record from a copy", "do not delete it"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("forget's error lacks %q:\n%s", want, r.stderr)
		}
	}

	r = e.run("hold", "list")
	if r.code != exitPartial {
		t.Errorf("hold list with a damaged hold record: exit %d, want %d\nstdout: %s\nstderr: %s", r.code, exitPartial, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, obj) || !strings.Contains(r.stderr, "restore the record from a copy") {
		t.Errorf("hold list does not name %s and what to do:\n%s", obj, r.stderr)
	}
	r = e.run("--json", "hold", "list")
	if r.code != exitPartial {
		t.Errorf("hold list --json: exit %d, want %d", r.code, exitPartial)
	}
	var hl struct {
		Unreadable []struct{ Object, Error string } `json:"unreadable"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &hl); err != nil {
		t.Fatalf("hold list --json: %v\n%s", err, r.stdout)
	}
	if len(hl.Unreadable) != 1 || hl.Unreadable[0].Object != obj {
		t.Errorf("hold list --json unreadable = %+v, want %s", hl.Unreadable, obj)
	}

	r = e.run("verify")
	if r.code != 1 {
		t.Errorf("verify with a damaged hold record: exit %d, want 1\n%s", r.code, r.stdout)
	}
	if !strings.Contains(r.stderr, "error: "+obj+": ") || !strings.Contains(r.stderr, "do not delete it") {
		t.Errorf("verify does not report %s with what to do:\n%s", obj, r.stderr)
	}
	r = e.run("--json", "verify")
	var v struct {
		OK     bool `json:"ok"`
		Report struct {
			Problems []struct{ Object, Error string } `json:"problems"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, r.stdout)
	}
	if v.OK || len(v.Report.Problems) != 1 || v.Report.Problems[0].Object != obj {
		t.Errorf("verify --json: ok %v, problems %+v; want %s", v.OK, v.Report.Problems, obj)
	}
	if _, err := os.Stat(holds[0]); err != nil {
		t.Errorf("the damaged hold record is gone: %v", err)
	}
}
