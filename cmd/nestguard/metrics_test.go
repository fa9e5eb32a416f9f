package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// promValue returns the value of the series name{command="cmd",...} in a
// textfile, or -1 when it is absent.
func promValue(t *testing.T, path, name, cmd string) float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{command="` + regexp.QuoteMeta(cmd) + `",repo="[^"]*"\} (\S+)$`)
	m := re.FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// TestMetricsFile: backup and verify record their outcome in the textfile
// the config file names; a failed backup keeps its last success; read-only
// commands write nothing.
func TestMetricsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := &configEnv{t: t}
	prom := filepath.Join(dir, "nestguard.prom")
	pass := filepath.Join(dir, "pass")
	writeFile(t, pass, "metrics test passphrase\n", 0o600)
	cfg := filepath.Join(dir, "nestguard.toml")
	writeFile(t, cfg, "repo = \""+filepath.Join(dir, "repo")+"\"\npassword-file = \""+pass+"\"\nmetrics-file = \""+prom+"\"\n", 0o600)
	src := filepath.Join(dir, "src")
	writeTree(t, src, 7, 20, 64<<10)

	c.must(nil, "--config", cfg, "init")
	if _, err := os.Stat(prom); !os.IsNotExist(err) {
		t.Fatalf("init wrote metrics: %v", err)
	}
	c.must(nil, "--config", cfg, "backup", src)
	if v := promValue(t, prom, "nestguard_last_run_success", "backup"); v != 1 {
		t.Errorf("success after a backup = %v", v)
	}
	if v := promValue(t, prom, "nestguard_backup_files", "backup"); v < 20 {
		t.Errorf("files = %v, want at least 20", v)
	}
	if v := promValue(t, prom, "nestguard_backup_bytes_added", "backup"); v <= 0 {
		t.Errorf("bytes added = %v", v)
	}
	success := promValue(t, prom, "nestguard_last_success_timestamp_seconds", "backup")

	if r := c.run(nil, "--config", cfg, "backup", filepath.Join(dir, "missing")); r.code != 1 {
		t.Fatalf("backup of a missing path: exit %d", r.code)
	}
	if v := promValue(t, prom, "nestguard_last_run_exit_code", "backup"); v != 1 {
		t.Errorf("exit code after a failed backup = %v", v)
	}
	if v := promValue(t, prom, "nestguard_last_success_timestamp_seconds", "backup"); v != success {
		t.Errorf("last success after a failure = %v, want %v", v, success)
	}

	c.must(nil, "--config", cfg, "verify")
	if v := promValue(t, prom, "nestguard_verify_problems", "verify"); v != 0 {
		t.Errorf("verify problems = %v", v)
	}
	if v := promValue(t, prom, "nestguard_last_run_exit_code", "backup"); v != 1 {
		t.Errorf("verify dropped the backup's series: exit code %v", v)
	}
	before, _ := os.ReadFile(prom)
	c.must(nil, "--config", cfg, "snapshots")
	if after, _ := os.ReadFile(prom); string(after) != string(before) {
		t.Error("snapshots rewrote the metrics file")
	}
}
