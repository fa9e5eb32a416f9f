package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// damagedSource makes a source repository with two snapshots: the older
// one's data lost (its packs removed), the newer one healthy. It returns
// the source and the IDs of the damaged and the healthy snapshot.
func damagedSource(t *testing.T) (src *env, damaged, healthy string) {
	t.Helper()
	src = newEnv(t)
	a := filepath.Join(src.dir, "a")
	b := filepath.Join(src.dir, "b")
	os.MkdirAll(a, 0o755)
	os.MkdirAll(b, 0o755)
	writeRandom(t, filepath.Join(a, "f"), 2<<20, 4611)
	writeRandom(t, filepath.Join(b, "g"), 2<<20, 4612)
	src.must("init")
	src.must("backup", a)
	first := packFiles(t, src.repo)
	src.must("backup", b)
	for _, p := range first { // lose what only the old snapshot needs
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	ids := src.snapshotIDs()
	return src, ids[0], ids[1]
}

// copiedFrom returns, oldest first, the IDs of the source snapshots whose
// copies the destination holds, matched by time (a copy keeps its
// source's; 'snapshots --json' does not show copied_from); "?" for a
// snapshot of the destination with no source snapshot of its time.
func copiedFrom(t *testing.T, src, dst *env) []string {
	t.Helper()
	type snap struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}
	list := func(e *env) []snap {
		var snaps []snap
		if err := json.Unmarshal([]byte(e.must("snapshots", "--json")), &snaps); err != nil {
			t.Fatal(err)
		}
		return snaps
	}
	byTime := make(map[time.Time]string)
	for _, s := range list(src) {
		byTime[s.Time] = s.ID
	}
	var out []string
	for _, s := range list(dst) {
		sid, ok := byTime[s.Time]
		if !ok {
			sid = "?"
		}
		out = append(out, sid)
	}
	return out
}

// TestCopyAllSkipsDamagedSnapshot: one old snapshot whose data is lost in
// the source must not keep 'copy --all' from copying the later healthy
// ones (it stopped at the damaged one, copying none). The damaged one is
// named, in text and in --json ("failed"), the copy exits 1, and the
// destination holds no incomplete copy: it verifies, data included.
func TestCopyAllSkipsDamagedSnapshot(t *testing.T) {
	t.Parallel()
	src, damaged, healthy := damagedSource(t)
	dst := newEnv(t)
	dst.must("init")
	dst.extraEnv = append(dst.extraEnv, "NESTGUARD_FROM_PASSWORD="+src.pass)
	r := dst.run("copy", "--from-repo", src.repo, "--all")
	if r.code != 1 {
		t.Fatalf("copy with a damaged source snapshot: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if got := copiedFrom(t, src, dst); len(got) != 1 || got[0] != healthy {
		t.Errorf("destination holds copies of %v, want only the healthy %s\nstdout: %s\nstderr: %s", got, healthy[:8], r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "snapshot "+damaged[:8]+" of ") || !strings.Contains(r.stdout, "NOT copied") {
		t.Errorf("copy does not name the snapshot it could not copy (%s):\n%s", damaged[:8], r.stdout)
	}
	if !strings.Contains(r.stderr, damaged[:8]) || !strings.Contains(r.stderr, "nestguard verify") {
		t.Errorf("the error names neither the snapshot nor what to do:\n%s", r.stderr)
	}
	dst.must("verify", "--read-data")

	// Again, in JSON: the healthy one is there, the damaged one failed.
	r = dst.run("copy", "--from-repo", src.repo, "--all", "--json")
	if r.code != 1 {
		t.Fatalf("second copy: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	var res struct {
		Copied  []struct{ Source string } `json:"copied"`
		Skipped []struct{ Source string } `json:"skipped"`
		Failed  []struct {
			Source string `json:"source"`
			Error  string `json:"error"`
		} `json:"failed"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("copy --json: %v\n%s", err, r.stdout)
	}
	if len(res.Copied) != 0 || len(res.Skipped) != 1 || res.Skipped[0].Source != healthy ||
		len(res.Failed) != 1 || res.Failed[0].Source != damaged || res.Failed[0].Error == "" {
		t.Errorf("copy --json: %s", r.stdout)
	}
}

// TestCopyContinuousCopiesPastDamagedSnapshot: a continuous copy keeps
// copying the healthy snapshots, new ones included, while an old one of
// the source stays damaged (every round failed before copying any).
func TestCopyContinuousCopiesPastDamagedSnapshot(t *testing.T) {
	t.Parallel()
	src, _, healthy := damagedSource(t)
	dst := newEnv(t)
	dst.must("init")
	dst.extraEnv = append(dst.extraEnv, "NESTGUARD_FROM_PASSWORD="+src.pass)
	c := dst.cmd("copy", "--from-repo", src.repo, "--all", "--continuous", "--interval", "200ms")
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			c.Process.Signal(os.Interrupt)
			c.Wait()
		}
	}
	defer stop()
	waitFor := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			got := copiedFrom(t, src, dst)
			if strings.Join(got, ",") == strings.Join(want, ",") {
				return
			}
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("continuous copy: destination holds copies of %v, want %v\nstdout: %s\nstderr: %s", got, want, out.String(), errb.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor([]string{healthy})
	c2 := filepath.Join(src.dir, "c")
	os.MkdirAll(c2, 0o755)
	writeRandom(t, filepath.Join(c2, "h"), 1<<20, 4613)
	src.must("backup", c2)
	ids := src.snapshotIDs()
	waitFor([]string{healthy, ids[2]})
	stop()
	if !strings.Contains(errb.String(), "copy incomplete") {
		t.Errorf("continuous copy did not report the snapshot it could not copy:\n%s", errb.String())
	}
}
