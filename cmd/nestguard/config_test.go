package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// configEnv runs nestguard with only the environment a test gives it, so
// that the config file is the one source of settings.
type configEnv struct{ t *testing.T }

func (c *configEnv) run(extraEnv []string, args ...string) result {
	c.t.Helper()
	if inProcessEnv(extraEnv) {
		lookup := func(k string) (string, bool) {
			if strings.HasPrefix(k, "NESTGUARD_") {
				return "", false
			}
			return os.LookupEnv(k)
		}
		return runInProcess(lookup, extraEnv, args)
	}
	cmd := exec.Command(ngBin, ngArgs(args)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NESTGUARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = ngEnv(append(cmd.Env, extraEnv...))
	return execute(c.t, cmd)
}

func (c *configEnv) must(extraEnv []string, args ...string) string {
	c.t.Helper()
	r := c.run(extraEnv, args...)
	if r.code != 0 {
		c.t.Fatalf("nestguard %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// TestConfigFile: the repository, the passphrase file and a command's
// flags come from the config file; the environment and the command line
// win over it; a malformed file is a usage error naming what is wrong.
func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := &configEnv{t: t}
	repo := filepath.Join(dir, "repo")
	pass := filepath.Join(dir, "pass")
	writeFile(t, pass, "config test passphrase\n", 0o600)
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	writeFile(t, filepath.Join(src, "keep.txt"), "kept", 0o644)
	writeFile(t, filepath.Join(src, "skip.tmp"), "excluded by the config", 0o644)

	cfg := filepath.Join(dir, "nestguard.toml")
	writeFile(t, cfg, `# settings for the test
repo = "`+repo+`"
password-file = "`+pass+`"

[backup]
exclude = ["*.tmp"]
tag = ["from-config", "nightly"]
`, 0o600)

	c.must(nil, "--config", cfg, "init")
	c.must([]string{"NESTGUARD_CONFIG=" + cfg}, "backup", src)
	tags := func(args ...string) [][]string {
		var list []struct {
			Tags []string `json:"tags"`
		}
		out := c.must(nil, append([]string{"--config", cfg, "snapshots", "--json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("snapshots --json: %v\n%s", err, out)
		}
		var all [][]string
		for _, s := range list {
			all = append(all, s.Tags)
		}
		return all
	}
	if got := tags(); len(got) != 1 || !slices.Equal(got[0], []string{"from-config", "nightly"}) {
		t.Errorf("tags from the config file: %v", got)
	}
	if ls := c.must(nil, "--config", cfg, "ls", "latest"); !strings.Contains(ls, "keep.txt") || strings.Contains(ls, "skip.tmp") {
		t.Errorf("the config's exclude was not applied:\n%s", ls)
	}

	// The command line wins over the file: --tag replaces the file's tags.
	c.must(nil, "--config", cfg, "backup", "--tag", "manual", src)
	if got := tags(); len(got) != 2 || !slices.Equal(got[1], []string{"manual"}) {
		t.Errorf("tags after --tag manual: %v", got)
	}
	// So does the environment, and then the flag wins over it.
	other := filepath.Join(dir, "other")
	if r := c.run([]string{"NESTGUARD_REPO=" + other}, "--config", cfg, "snapshots"); r.code != 1 || !strings.Contains(r.stderr, other) {
		t.Errorf("NESTGUARD_REPO over the file: exit %d: %s", r.code, r.stderr)
	}
	if r := c.run([]string{"NESTGUARD_REPO=" + other}, "--config", cfg, "--repo", repo, "snapshots"); r.code != 0 {
		t.Errorf("--repo over NESTGUARD_REPO: exit %d: %s", r.code, r.stderr)
	}

	for _, tc := range []struct {
		name, text, want string
		mode             os.FileMode
	}{
		{"unknown key", "repo = \"" + repo + "\"\n[backup]\nexlude = [\"*.tmp\"]\n", "unknown setting [backup] exlude: 'nestguard backup' has no flag --exlude", 0o600},
		{"unknown section", "[bakup]\ntag = [\"x\"]\n", "unknown section [bakup]", 0o600},
		{"global key in a section", "[backup]\nrepo = \"/srv\"\n", "[backup] repo is a setting of a parent command", 0o600},
		{"secret", "password = \"hunter2\"\n", "secrets are not read from the config file", 0o600},
		{"syntax", "repo = /srv/backup\n", "line 1", 0o600},
		{"wrong type", "[backup]\none-file-system = \"sometimes\"\n", "[backup] one-file-system", 0o600},
		{"two values for one", "repo = [\"/a\", \"/b\"]\n", "repo takes one value, not 2", 0o600},
		{"misspelt class setting", "[class.logs]\nflor = \"90d\"\n", "[class.logs] flor: unknown class setting", 0o600},
		{"class outside a table", "[class]\nfloor = \"90d\"\n", "a data class is a table [class.NAME]", 0o600},
		{"writable by others", "repo = \"" + repo + "\"\n", "chmod go-w", 0o666},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(dir, "bad.toml")
			writeFile(t, bad, tc.text, tc.mode)
			r := c.run(nil, "--config", bad, "backup", src)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, bad) {
				t.Errorf("exit %d, stderr %q; want exit 2 naming %s and %q", r.code, r.stderr, bad, tc.want)
			}
			if strings.Contains(r.stderr, "hunter2") {
				t.Error("the error repeats the secret")
			}
		})
	}
	if r := c.run(nil, "--config", filepath.Join(dir, "missing.toml"), "snapshots"); r.code != 2 || !strings.Contains(r.stderr, "missing.toml") {
		t.Errorf("a missing --config file: exit %d: %s", r.code, r.stderr)
	}
}
