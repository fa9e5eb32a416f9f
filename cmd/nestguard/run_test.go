package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunInProcess: a command run through run() reads its environment and
// writes its output, help, errors and usage hints only through the system
// it is given, and maps errors to the exit codes main returns.
func TestRunInProcess(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	r := runInProcess(none, nil, []string{"snapshots"})
	if r.code != exitUsage || !strings.Contains(r.stderr, "no repository given") || !strings.Contains(r.stderr, "see 'nestguard snapshots --help'") || r.stdout != "" {
		t.Errorf("without a repository: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = runInProcess(none, nil, []string{"restore", "--help"})
	if r.code != exitOK || !strings.Contains(r.stdout, "--target") {
		t.Errorf("restore --help: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// The repository and passphrase come from the environment given, never
	// from the test process's.
	repo := filepath.Join(t.TempDir(), "repo")
	t.Setenv("NESTGUARD_REPO", filepath.Join(t.TempDir(), "not-this-one"))
	env := []string{"NESTGUARD_REPO=" + repo, "NESTGUARD_PASSWORD=in-process passphrase"}
	if r = runInProcess(none, env, []string{"init", "--json"}); r.code != exitOK {
		t.Fatalf("init: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkJSON(t, "init", r.stdout, "json_version repository id config")
	if _, err := os.Stat(filepath.Join(repo, "config")); err != nil {
		t.Errorf("init did not create the repository the given environment names: %v", err)
	}
	r = runInProcess(none, []string{"NESTGUARD_REPO=" + repo, "NESTGUARD_PASSWORD=wrong"}, []string{"snapshots"})
	if r.code != exitError || !strings.HasPrefix(r.stderr, "nestguard: ") {
		t.Errorf("wrong passphrase: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = runInProcess(none, []string{"NESTGUARD_REPO=" + repo}, []string{"snapshots"})
	if r.code != exitError || !strings.Contains(r.stderr, "no passphrase") {
		t.Errorf("no passphrase and stdin not a terminal: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
