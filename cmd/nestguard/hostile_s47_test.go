package main

// Hostile round s47: the contract scripts and operators rely on (--json,
// exit codes, the config file and the environment, stdout). Each test is
// a finding of /work/helpers/hostile-s47.md, by its id.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// s47Repo makes a repository with one snapshot of a small tree and
// returns its env and the tree's directory.
func s47Repo(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "a"), "contents of a", 0o644)
	e.must("init")
	e.must("backup", src)
	return e, src
}

// TestHostileS47StdoutWriteErrorExits1 (F2, MEDIUM): a command whose
// output cannot be written (stdout on a full disk, a broken NFS file)
// exits 0 when it prints text, so that 'nestguard audit key > audit.pub'
// on a full file system leaves an empty key file that a script believes.
func TestHostileS47StdoutWriteErrorExits1(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	e, _ := s47Repo(t)
	for _, args := range [][]string{{"audit", "key"}, {"snapshots"}, {"ls", "latest"}, {"stats"}, {"audit", "log"}, {"verify"}} {
		full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := e.cmd(args...)
		var se strings.Builder
		c.Stdout, c.Stderr = full, &se
		err = c.Run()
		full.Close()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != exitError || !strings.Contains(se.String(), "no space left on device") {
			t.Errorf("nestguard %s > /dev/full: exit %d, want 1 naming the write error\nstderr: %s", strings.Join(args, " "), code, se.String())
		}
	}
}

// TestHostileS47SecretPrecedence (F1, MEDIUM): the passphrase and key file
// follow "command line, then environment, then the config file" like
// every other setting: a password-file or key-file in the config file
// must not win over NESTGUARD_PASSWORD, --password-file or
// NESTGUARD_PASSWORD_FILE.
func TestHostileS47SecretPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := &configEnv{t: t}
	repo := filepath.Join(dir, "repo")
	right := filepath.Join(dir, "right")
	wrong := filepath.Join(dir, "wrong")
	writeFile(t, right, "the right passphrase\n", 0o600)
	writeFile(t, wrong, "a wrong passphrase\n", 0o600)
	c.must([]string{"NESTGUARD_PASSWORD=the right passphrase"}, "init", "--repo", repo)

	withPassFile := filepath.Join(dir, "pass.toml")
	writeFile(t, withPassFile, "repo = \""+repo+"\"\npassword-file = \""+wrong+"\"\n", 0o644)
	withKeyFile := filepath.Join(dir, "key.toml")
	writeFile(t, withKeyFile, "repo = \""+repo+"\"\nkey-file = \""+filepath.Join(dir, "no-such.key")+"\"\n", 0o644)

	for _, tc := range []struct {
		what string
		env  []string
		args []string
	}{
		{"NESTGUARD_PASSWORD over the file's password-file", []string{"NESTGUARD_PASSWORD=the right passphrase"}, []string{"--config", withPassFile}},
		{"NESTGUARD_PASSWORD over the file's key-file", []string{"NESTGUARD_PASSWORD=the right passphrase"}, []string{"--config", withKeyFile}},
		{"--password-file over the file's key-file", nil, []string{"--config", withKeyFile, "--password-file", right}},
		{"NESTGUARD_PASSWORD_FILE over the file's key-file", []string{"NESTGUARD_PASSWORD_FILE=" + right}, []string{"--config", withKeyFile}},
	} {
		r := c.run(tc.env, append(tc.args, "snapshots", "-q")...)
		if r.code != 0 {
			t.Errorf("%s: exit %d\n%s", tc.what, r.code, r.stderr)
		}
	}
	// The file's own settings still open the repository when nothing
	// else is given.
	writeFile(t, withPassFile, "repo = \""+repo+"\"\npassword-file = \""+right+"\"\n", 0o644)
	c.must(nil, "--config", withPassFile, "snapshots", "-q")
}

// TestHostileS47CopyJSONAuditEntries (F3, LOW): docs/json.md lists
// audit_entries_copied in copy's document; copy --json leaves it out.
func TestHostileS47CopyJSONAuditEntries(t *testing.T) {
	t.Parallel()
	src, _ := s47Repo(t)
	dst := newEnv(t)
	dst.extraEnv = append(dst.extraEnv, "NESTGUARD_FROM_PASSWORD="+src.pass)
	dst.must("init")
	out := dst.must("copy", "--from-repo", src.repo, "--all", "--json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("copy --json: %v\n%s", err, out)
	}
	n, ok := doc["audit_entries_copied"].(float64)
	if !ok || n < 1 {
		t.Errorf("copy --json: audit_entries_copied = %v (present %v), want the entries copied (docs/json.md)\n%s", doc["audit_entries_copied"], ok, out)
	}
}

// TestHostileS47VerifyJSONTimeRFC3339 (F4, LOW): verify --json gives a
// damaged snapshot's time as "2006-01-02 15:04:05" without a zone, where
// docs/json.md promises RFC 3339 for every time.
func TestHostileS47VerifyJSONTimeRFC3339(t *testing.T) {
	t.Parallel()
	e, _ := s47Repo(t)
	packs, err := filepath.Glob(filepath.Join(e.repo, "data", "*", "*"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("no packs: %v", err)
	}
	for _, p := range packs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := e.run("verify", "--read-data", "--json")
	var doc struct {
		Report struct {
			Damaged []struct {
				Time string `json:"time"`
			} `json:"damaged_snapshots"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Report.Damaged) == 0 {
		t.Fatalf("verify --json (exit %d): %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	for _, d := range doc.Report.Damaged {
		if _, err := time.Parse(time.RFC3339Nano, d.Time); err != nil {
			t.Errorf("verify --json: damaged snapshot time %q is not RFC 3339: %v", d.Time, err)
		}
	}
}

// TestHostileS47BoolEnv (F6, LOW): NESTGUARD_NO_CACHE=1 (or yes, TRUE)
// is silently false, and, being set, also makes the config file's
// no-cache = true ignored. A value that is no boolean must be refused, and
// 1 and TRUE mean true as they do for the flags.
func TestHostileS47BoolEnv(t *testing.T) {
	t.Parallel()
	e, _ := s47Repo(t)
	cache := filepath.Join(e.dir, "cache")
	// The in-process runs see the test process's environment: the
	// cache directory is this test's.
	for _, v := range []string{"1", "TRUE"} {
		r := runSystem(os.LookupEnv, []string{"NESTGUARD_PASSWORD=" + e.pass, "NESTGUARD_NO_CACHE=" + v, "NESTGUARD_CACHE_DIR=" + cache},
			fastKDF(), []string{"--repo", e.repo, "--index-cache-min-blobs", "1", "ls", "latest"})
		if r.code != 0 {
			t.Fatalf("NESTGUARD_NO_CACHE=%s: exit %d\n%s", v, r.code, r.stderr)
		}
		if ents, _ := os.ReadDir(cache); len(ents) > 0 {
			t.Errorf("NESTGUARD_NO_CACHE=%s: the index went to the cache %s all the same", v, cache)
		}
	}
	for _, kv := range []string{"NESTGUARD_NO_CACHE=sometimes", "NESTGUARD_S3_PATH_STYLE=yes please"} {
		r := runSystem(os.LookupEnv, []string{"NESTGUARD_PASSWORD=" + e.pass, kv}, fastKDF(), []string{"--repo", e.repo, "snapshots", "-q"})
		name, _, _ := strings.Cut(kv, "=")
		if r.code != exitUsage || !strings.Contains(r.stderr, name) {
			t.Errorf("%s: exit %d, want 2 naming the variable\n%s", kv, r.code, r.stderr)
		}
	}
}

// TestHostileS47JSONEveryCommand (F5, LOW): docs/json.md says every
// command prints one JSON document with --json. 'key remove --json'
// prints nothing at all, 'audit key --json' and 'audit checkpoint --json'
// print text.
func TestHostileS47JSONEveryCommand(t *testing.T) {
	t.Parallel()
	e, _ := s47Repo(t)
	pw := filepath.Join(e.dir, "pw2")
	writeFile(t, pw, "second passphrase\n", 0o600)
	var added struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.must("key", "add", "--new-password-file", pw, "--json")), &added); err != nil {
		t.Fatal(err)
	}
	check := func(want string, args ...string) {
		t.Helper()
		r := e.run(append(args, "--json")...)
		if r.code != 0 {
			t.Errorf("%s --json: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
			return
		}
		var v any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Errorf("%s --json: not one JSON document: %v\n%q", strings.Join(args, " "), err, r.stdout)
			return
		}
		checkJSON(t, strings.Join(args, " "), r.stdout, want)
	}
	check("json_version key", "audit", "key")
	check("json_version log size root checkpoint", "audit", "checkpoint")
	check("json_version id", "key", "remove", added.ID)
}

// TestHostileS47UnreadableConfigNotUsage (F7, LOW): a config file that
// exists but cannot be read (a root-only /etc/nestguard/nestguard.toml
// read by archive_command as postgres) is reported as a usage error (exit
// 2, "usage: nestguard snapshots [flags]"), though nothing in the command
// line is wrong, and without saying what to do.
func TestHostileS47UnreadableConfigNotUsage(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run as another user")
	}
	e, _ := s47Repo(t)
	cfg := filepath.Join(e.dir, "root-only.toml")
	writeFile(t, cfg, "repo = \""+e.repo+"\"\n", 0o600)
	e.cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	r := e.run("--config", cfg, "snapshots")
	if r.code != exitError || strings.Contains(r.stderr, "usage:") || !strings.Contains(r.stderr, "chmod") {
		t.Errorf("unreadable config file: exit %d, want 1 with what to do (not a usage error)\n%s", r.code, r.stderr)
	}
	// restore_command keeps exit 200: 1 would end PostgreSQL's recovery.
	r = e.run("--config", cfg, "pg", "restore-wal", "000000010000000000000001", filepath.Join(e.dir, "RECOVERYXLOG"))
	if r.code != exitRecoveryAbort {
		t.Errorf("pg restore-wal with an unreadable config file: exit %d, want 200\n%s", r.code, r.stderr)
	}
}

// TestHostileS47CopyContinuousJSONLines (F8, LOW): 'copy --continuous
// --json' prints one indented document per round that copied something,
// one after the other on stdout: no JSON parser but a streaming one reads
// that, and docs/json.md promises one document. Each round must be one
// line (JSON lines), as docs/json.md then says.
func TestHostileS47CopyContinuousJSONLines(t *testing.T) {
	t.Parallel()
	src, dir := s47Repo(t)
	dst := newEnv(t)
	dst.must("init")
	c := dst.cmd("copy", "--from-repo", src.repo, "--all", "--continuous", "--interval", "200ms", "--json")
	c.Env = append(c.Env, "NESTGUARD_FROM_PASSWORD="+src.pass)
	var so, se lockedBuffer
	c.Stdout, c.Stderr = &so, &se
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// A second round copies the second backup.
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				c.Process.Kill()
				c.Wait()
				t.Fatalf("%s: timed out\nstdout: %s\nstderr: %s", what, so.String(), se.String())
			}
		}
	}
	waitFor("first round", func() bool { return strings.Contains(so.String(), `"copied"`) })
	writeFile(t, filepath.Join(dir, "b"), "a second file", 0o644)
	src.must("backup", dir)
	waitFor("second round", func() bool { return strings.Count(so.String(), `"copied"`) >= 2 })
	c.Process.Signal(syscall.SIGTERM)
	c.Wait()
	lines := strings.Split(strings.TrimSpace(so.String()), "\n")
	if len(lines) != 2 {
		t.Errorf("copy --continuous --json: %d lines for 2 rounds, want one JSON document a line:\n%s", len(lines), so.String())
	}
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("copy --continuous --json: line %q is not a JSON document: %v", l, err)
			break
		}
	}
}

// TestHostileS47UsageHintExample (F11, LOW): the example a usage error
// shows is the first line of the command's examples, which for 'pg
// archive-wal' is a comment: "example: # postgresql.conf".
func TestHostileS47UsageHintExample(t *testing.T) {
	t.Parallel()
	r := runInProcess(os.LookupEnv, nil, []string{"pg", "archive-wal"})
	if r.code != exitUsage || strings.Contains(r.stderr, "example: #") || !strings.Contains(r.stderr, "example: archive_command = ") {
		t.Errorf("pg archive-wal without its argument: exit %d, want 2 with an example that is a command line\n%s", r.code, r.stderr)
	}
}

// TestHostileS47EnvDocumented (F10, LOW): every flag with an environment
// variable names it in its help, and every NESTGUARD_ variable the help
// of a command mentions is in docs/configuration.md's table. --ca-cert
// and --s3-path-style did not name theirs; NESTGUARD_NEW_PASSWORD (key
// add) was not in the table.
func TestHostileS47EnvDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	a := newApp(processSystem())
	root := a.rootCommand()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(fl *pflag.Flag) {
			for _, v := range fl.Annotations[envAnnotation] {
				if !strings.Contains(fl.Usage, v) && !strings.HasPrefix(fl.Usage, "the same as --") {
					t.Errorf("%s --%s: its help does not name %s", c.CommandPath(), fl.Name, v)
				}
			}
		}
		c.LocalFlags().VisitAll(check)
		text := c.Long
		c.LocalFlags().VisitAll(func(fl *pflag.Flag) { text += " " + fl.Usage })
		for _, v := range regexp.MustCompile(`NESTGUARD_[A-Z0-9_]+`).FindAllString(text, -1) {
			if !strings.Contains(string(doc), "`"+v+"`") {
				t.Errorf("%s: its help names %s, which docs/configuration.md does not list", c.CommandPath(), v)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// TestHostileS47ReportJSONAndFormatText (F13, LOW): 'report compliance
// --json --format html' is refused as two formats, but '--json --format
// text' prints JSON: the text asked for explicitly is silently dropped.
func TestHostileS47ReportJSONAndFormatText(t *testing.T) {
	t.Parallel()
	e, _ := s47Repo(t)
	r := e.run("report", "compliance", "--json", "--format", "text")
	if r.code != exitUsage {
		t.Errorf("report compliance --json --format text: exit %d, want 2 (two formats), as with --format html\n%s", r.code, r.stderr)
	}
}

// TestHostileS47MetricsWarningJSON (F14, LOW): with --json, log lines on
// stderr are JSON (docs/json.md), but a --metrics-file that cannot be
// written is reported as a plain "nestguard: warning: ..." line.
func TestHostileS47MetricsWarningJSON(t *testing.T) {
	t.Parallel()
	e, _ := s47Repo(t)
	bad := filepath.Join(e.dir, "no-such-dir", "m.prom")
	for _, q := range [][]string{nil, {"-q"}} {
		r := e.run(append([]string{"--json", "--metrics-file", bad, "verify"}, q...)...)
		if r.code != 0 || !strings.Contains(r.stderr, "no-such-dir") {
			t.Fatalf("exit %d, want 0 and the metrics file named on stderr\n%s", r.code, r.stderr)
		}
		for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			var v map[string]any
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Errorf("--json %v: stderr line %q is not a JSON log line", q, l)
			}
		}
	}
}

// TestHostileS47TestHooksInRelease (F15, LOW): the end-to-end tests'
// hooks are in every binary, the release one too: NESTGUARD_TEST_PRUNE_AT
// =marked:kill makes a production prune SIGKILL itself after writing its
// deletion-candidate record (POINT:pause makes it wait on stdin), and
// NESTGUARD_TEST_AUDIT_AT does the same to forget. Neither variable is
// documented; whoever sets a cron job's environment can stop every prune
// half-way without a trace in the audit log but a 'started' record.
//
// The test binary is built as a release is, without the
// nestguard_testhooks tag (only the nestguard binary TestMain builds for
// the end-to-end runs has it), so a prune run in this process with the
// hook's variable set must not kill itself (a build with the hooks would
// kill the test, which fails it too).
func TestHostileS47TestHooksInRelease(t *testing.T) {
	t.Parallel()
	if testHooks {
		t.Fatal("the test hooks are on in a build without the nestguard_testhooks tag")
	}
	e, src := s47Repo(t)
	writeFile(t, filepath.Join(src, "b"), "another file", 0o644)
	e.must("backup", src)
	e.must("forget", "--keep-last", "1")
	e.extraEnv = append(e.extraEnv, "NESTGUARD_TEST_PRUNE_AT=marked:kill", "NESTGUARD_TEST_AUDIT_AT=intent:kill")
	if r := e.runHere("prune", "--grace", "0"); r.code != 0 {
		t.Errorf("a release build's prune with the test hooks' variables set: exit %d, want 0\n%s", r.code, r.stderr)
	}
}
