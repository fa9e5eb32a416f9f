package metrics

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// value returns the gauge name{command, repo} of the file at path.
func value(t *testing.T, path, name, command, repo string) (float64, bool) {
	t.Helper()
	fams, err := read(path)
	if err != nil {
		t.Fatalf("reading back %s: %v", path, err)
	}
	f := fams[name]
	if f == nil {
		return 0, false
	}
	if !f.gauge || f.help == "" {
		t.Errorf("%s: gauge %v, help %q", name, f.gauge, f.help)
	}
	for _, m := range f.series {
		if sameRun(m, Run{Command: command, Repo: repo}) {
			return m.value, true
		}
	}
	return 0, false
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nestguard.prom")
	start := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	ok := Run{Command: "backup", Repo: "/srv/backup", Start: start, Duration: 90 * time.Second,
		Values: map[string]float64{"files": 1022, "bytes_added": 5 << 20}}
	if err := Write(path, ok); err != nil {
		t.Fatal(err)
	}
	end := float64(start.Add(90 * time.Second).Unix())
	for name, want := range map[string]float64{
		lastRun: end, lastSuccess: end, duration: 90, exitCode: 0, success: 1,
		"nestguard_backup_files": 1022, "nestguard_backup_bytes_added": 5 << 20,
	} {
		if got, found := value(t, path, name, "backup", "/srv/backup"); !found || got != want {
			t.Errorf("%s = %v (found %v), want %v", name, got, found, want)
		}
	}

	// Another command and repository share the file.
	wal := Run{Command: "pg archive-wal", Repo: "s3://ledger/prod", Start: start.Add(time.Hour), Duration: 40 * time.Millisecond,
		Values: map[string]float64{"bytes": 16 << 20}}
	if err := Write(path, wal); err != nil {
		t.Fatal(err)
	}
	if got, _ := value(t, path, "nestguard_pg_archive_wal_bytes", "pg archive-wal", "s3://ledger/prod"); got != 16<<20 {
		t.Errorf("archive-wal bytes = %v", got)
	}
	if got, found := value(t, path, lastSuccess, "backup", "/srv/backup"); !found || got != end {
		t.Errorf("the backup's last success was not kept beside archive-wal: %v %v", got, found)
	}

	// A failed backup keeps the last success and records the failure.
	failed := Run{Command: "backup", Repo: "/srv/backup", Start: start.Add(24 * time.Hour), Duration: time.Second, ExitCode: 1}
	if err := Write(path, failed); err != nil {
		t.Fatal(err)
	}
	if got, _ := value(t, path, lastSuccess, "backup", "/srv/backup"); got != end {
		t.Errorf("last success after a failure = %v, want %v", got, end)
	}
	if got, _ := value(t, path, exitCode, "backup", "/srv/backup"); got != 1 {
		t.Errorf("exit code = %v", got)
	}
	if got, _ := value(t, path, success, "backup", "/srv/backup"); got != 0 {
		t.Errorf("success = %v", got)
	}
	if _, found := value(t, path, "nestguard_backup_files", "backup", "/srv/backup"); found {
		t.Error("the failed run kept the previous run's file count")
	}
	// A partial run is no success either.
	partial := failed
	partial.ExitCode = 3
	if err := Write(path, partial); err != nil {
		t.Fatal(err)
	}
	if got, _ := value(t, path, lastSuccess, "backup", "/srv/backup"); got != end {
		t.Errorf("last success after a partial run = %v, want %v", got, end)
	}

	// A later success moves it.
	again := ok
	again.Start = start.Add(48 * time.Hour)
	if err := Write(path, again); err != nil {
		t.Fatal(err)
	}
	if got, _ := value(t, path, lastSuccess, "backup", "/srv/backup"); got != float64(again.Start.Add(90*time.Second).Unix()) {
		t.Errorf("last success after a new success = %v", got)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "nestguard.prom" && e.Name() != "nestguard.prom.lock" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("file mode: %v %v", fi.Mode(), err)
	}
}

func TestWriteReplacesUnparsableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.prom")
	if err := os.WriteFile(path, []byte("this is { not the text format\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, Run{Command: "verify", Repo: "/r", Start: time.Now()}); err != nil {
		t.Fatalf("an unparsable previous file: %v", err)
	}
	if got, found := value(t, path, success, "verify", "/r"); !found || got != 1 {
		t.Errorf("success = %v (found %v)", got, found)
	}

	// A file that parses only up to a point carries nothing over: a failed
	// run then has no last success rather than one from a damaged file.
	damaged := "# TYPE " + lastSuccess + " gauge\n" +
		lastSuccess + `{command="backup",repo="/r"} 123` + "\nnot { valid\n"
	if err := os.WriteFile(path, []byte(damaged), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, Run{Command: "backup", Repo: "/r", Start: time.Now(), ExitCode: 1}); err != nil {
		t.Fatalf("a damaged previous file: %v", err)
	}
	if got, found := value(t, path, lastSuccess, "backup", "/r"); found {
		t.Errorf("last success %v carried over from a damaged file", got)
	}
	if got, found := value(t, path, exitCode, "backup", "/r"); !found || got != 1 {
		t.Errorf("exit code = %v (found %v)", got, found)
	}
}

// TestWriteReplacesByRename checks that the file is replaced whole, never
// rewritten in place where the collector could read half of it: a second
// link to the old file keeps the old contents.
func TestWriteReplacesByRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.prom")
	start := time.Now()
	if err := Write(path, Run{Command: "backup", Repo: "/r", Start: start}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "old")
	if err := os.Link(path, old); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	if err := Write(path, Run{Command: "backup", Repo: "/r", Start: start.Add(time.Hour), ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(old); err != nil || string(got) != string(before) {
		t.Errorf("the old file was changed in place (err %v)", err)
	}
	if got, _ := value(t, path, exitCode, "backup", "/r"); got != 1 {
		t.Errorf("exit code in the new file = %v, want 1", got)
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.prom")
	if err := Write(path, Run{Command: "backup", Start: time.Now()}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Run{
		{Command: "backup", Values: map[string]float64{"Bytes-Added": 1}},
		{Command: "backup", Values: map[string]float64{"1files": 1}},
		{Command: "backup", Values: map[string]float64{"": 1}},
		{Command: "pg.backup", Values: map[string]float64{"files": 1}},
		{Command: "last", Values: map[string]float64{"run_success": 1}},
	} {
		r.Start = time.Now()
		err := Write(path, r)
		if err == nil {
			t.Errorf("%q %v was written", r.Command, r.Values)
			continue
		}
		for k := range r.Values {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", k)) && !strings.Contains(err.Error(), fmt.Sprintf("%q", r.Command)) {
				t.Errorf("the error names neither the value nor the command: %v", err)
			}
		}
	}
	if after, err := os.ReadFile(path); err != nil || string(after) != string(before) {
		t.Errorf("a refused run changed the file (err %v)", err)
	}
	if err := Write(filepath.Join(dir, "z.prom"), Run{Command: "backup"}); err == nil {
		t.Error("a run without a start time was written")
	}
	missing := filepath.Join(dir, "no", "such", "x.prom")
	err = Write(missing, Run{Command: "backup", Start: time.Now()})
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "--metrics-file") {
		t.Errorf("missing directory: %v", err)
	}
	if err := Write(filepath.Join(dir, "y.prom"), Run{}); err == nil {
		t.Error("a run without a command was written")
	}
}
