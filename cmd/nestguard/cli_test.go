package main

// End-to-end tests of how the command line behaves for its user (issue
// 16): secret files' permissions, usage errors and suggestions, signals,
// and the flag vocabulary shared by the commands.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A passphrase or key file that group or others may read is used, with a
// warning that names it, its mode and the chmod to run, whichever way it
// is given; a key file is never generated in a directory others may write.
func TestSecretFilePermissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	pf := filepath.Join(e.dir, "pass")
	writeFile(t, pf, e.pass+"\n", 0o644)
	warned := func(r result, path string, mode os.FileMode) bool {
		return strings.Contains(r.stderr, path) && strings.Contains(r.stderr, fmt.Sprintf("mode %04o", mode)) &&
			strings.Contains(r.stderr, "chmod go= "+path)
	}

	r := e.run("--password-file", pf, "snapshots")
	if r.code != 0 || !warned(r, pf, 0o644) {
		t.Errorf("--password-file mode 0644: exit %d, no warning naming file, mode and chmod:\n%s", r.code, r.stderr)
	}
	c := e.cmd("snapshots")
	c.Env = append(c.Env, "NESTGUARD_PASSWORD_FILE="+pf)
	if r := execute(t, c); r.code != 0 || !warned(r, pf, 0o644) {
		t.Errorf("NESTGUARD_PASSWORD_FILE mode 0644: exit %d, no warning:\n%s", r.code, r.stderr)
	}
	os.Chmod(pf, 0o600)
	if r := e.run("--password-file", pf, "snapshots"); r.code != 0 || strings.Contains(r.stderr, pf) {
		t.Errorf("--password-file mode 0600: exit %d, warned:\n%s", r.code, r.stderr)
	}

	npf := filepath.Join(e.dir, "newpass")
	writeFile(t, npf, "second secret passphrase\n", 0o640)
	if r := e.run("key", "add", "--new-password-file", npf); r.code != 0 || !warned(r, npf, 0o640) {
		t.Errorf("--new-password-file mode 0640: exit %d, no warning:\n%s", r.code, r.stderr)
	}

	// A key file into a directory others may write to: refused before a
	// slot is added; into a private one: made, and warned about once loose.
	open := filepath.Join(e.dir, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o1777)
	slots := func() int {
		var keys []any
		json.Unmarshal([]byte(e.must("key", "list", "--json")), &keys)
		return len(keys)
	}
	before := slots()
	kf := filepath.Join(open, "wal.key")
	if r := e.run("key", "add", "--generate-key-file", kf); r.code == 0 || !strings.Contains(r.stderr, open) || !strings.Contains(r.stderr, "chmod go-w") {
		t.Errorf("key file in a 1777 directory: exit %d:\n%s", r.code, r.stderr)
	}
	if _, err := os.Lstat(kf); err == nil {
		t.Error("the refused key file was created")
	}
	if n := slots(); n != before {
		t.Errorf("a refused key file added a key slot: %d slots, were %d", n, before)
	}
	private := filepath.Join(e.dir, "private")
	os.Mkdir(private, 0o700)
	kf = filepath.Join(private, "wal.key")
	e.must("key", "add", "--generate-key-file", kf)
	if r := e.run("--key-file", kf, "snapshots"); r.code != 0 || strings.Contains(r.stderr, "warn") {
		t.Errorf("key file mode 0600: exit %d:\n%s", r.code, r.stderr)
	}
	os.Chmod(kf, 0o604)
	if r := e.run("--key-file", kf, "snapshots"); r.code != 0 || !warned(r, kf, 0o604) || !strings.Contains(r.stderr, "others") {
		t.Errorf("key file mode 0604: exit %d, no warning:\n%s", r.code, r.stderr)
	}
}

// Mistakes in calling nestguard are usage errors (exit 2) that say what to
// do instead; nothing that does no work exits 0.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"check"}, 2, []string{`unknown command "check"`, "did you mean 'nestguard verify'"}},
		{[]string{"verfiy"}, 2, []string{"did you mean 'nestguard verify'"}},
		{[]string{"archive-push"}, 2, []string{"'nestguard pg archive-wal'"}},
		{[]string{"key", "rotate"}, 2, []string{`unknown command "rotate" for "nestguard key"`, "add, list, remove"}},
		{[]string{"key", "rm", "x"}, 2, []string{"did you mean 'nestguard key remove'"}},
		{[]string{"hold", "remove", "x"}, 2, []string{"did you mean 'nestguard hold release'"}},
		{[]string{"pg", "archive"}, 2, []string{"did you mean 'nestguard pg archive-wal'"}},
		{[]string{"key"}, 2, []string{"'nestguard key' needs a command: add, list, remove"}},
		{[]string{"pg"}, 2, []string{"'nestguard pg' needs a command"}},
		{[]string{"hold"}, 2, []string{"'nestguard hold' needs a command"}},
		{[]string{}, 2, []string{"'nestguard' needs a command"}},
		{[]string{"key", "--help"}, 0, []string{"Available Commands"}},
		{[]string{"find", "--help"}, 2, []string{`unknown command "find" for "nestguard"`}},
		{[]string{"help", "find"}, 2, []string{`unknown command "find" for "nestguard"`}},
		{[]string{"key", "rotate", "-h"}, 2, []string{`unknown command "rotate" for "nestguard key"`}},
		{[]string{"help", "key", "rotate"}, 2, []string{`unknown command "rotate" for "nestguard key"`}},
		{[]string{"help", "pg", "restore"}, 0, []string{"nestguard pg restore"}},
		{[]string{"backup", e.dir, "--host", "db1\x1b[2J"}, 2, []string{"--host: host name", "control character"}},
		{[]string{"snapshots", "--host", "db\xfe"}, 2, []string{"--host: host name", "not UTF-8"}},
		{[]string{"restore"}, 2, []string{"usage: nestguard restore SNAPSHOT --target DIR", "example: nestguard restore latest --target"}},
		{[]string{"restore", "latest"}, 2, []string{"--target is required", "example: nestguard restore latest --target"}},
		{[]string{"verify", "5%"}, 2, []string{"--read-data 5%"}},
		{[]string{"verify", "--read-data", "500%"}, 2, []string{"not a percentage"}},
		{[]string{"verify", "--read-data", "0%"}, 2, []string{"above 0"}},
		{[]string{"snapshots", "--kind", "postgress"}, 2, []string{`--kind "postgress"`, "files or postgres"}},
		{[]string{"key", "add"}, 1, []string{"NESTGUARD_NEW_PASSWORD", "--new-password-file"}},
		{[]string{"backup", e.dir, "--exclude", "*.tmp", "--exclude", "["}, 2, []string{`--exclude: exclude pattern "["`, "syntax error in pattern"}},
		// A bad --s3-endpoint is a usage error (hostile-s3 L4: exit 1).
		{[]string{"--repo", "s3://b/p", "--s3-endpoint", "https://key:secret@127.0.0.1:1", "snapshots"}, 2, []string{"credentials do not belong in the endpoint URL"}},
		{[]string{"--repo", "s3://b/p", "--s3-endpoint", "https://127.0.0.1:1/some/path", "snapshots"}, 2, []string{"give only a scheme, host and port"}},
		{[]string{"--repo", "s3://b/p", "--s3-endpoint", "https://127.0.0.1:1?X-Amz-Signature=sig0123", "snapshots"}, 2, []string{`"https://127.0.0.1:1?..."`, "give only a scheme, host and port"}},
		{[]string{"--repo", "s3://b/p", "--s3-endpoint", "ftp://127.0.0.1:1", "snapshots"}, 2, []string{"unknown scheme"}},
	} {
		r := e.run(tc.args...)
		out := r.stderr
		if tc.code == 0 {
			out = r.stdout
		}
		ok := r.code == tc.code
		for _, w := range tc.want {
			ok = ok && strings.Contains(out, w)
		}
		if !ok {
			t.Errorf("nestguard %s: exit %d, want %d with %q:\n%s%s", strings.Join(tc.args, " "), r.code, tc.code, tc.want, r.stdout, r.stderr)
		}
	}
	if r := e.run("--repo", "s3://b/p", "--s3-endpoint", "https://127.0.0.1:1?X-Amz-Signature=sig0123", "snapshots"); strings.Contains(r.stderr, "sig0123") {
		t.Errorf("an endpoint's query string, which may hold a secret, is repeated:\n%s", r.stderr)
	}
	if r := e.run("key", "add"); strings.Contains(r.stderr, "use --password-file") {
		t.Errorf("key add names --password-file for the new passphrase:\n%s", r.stderr)
	}
	if out := e.must("--help"); !strings.Contains(out, "XAES-256-GCM") || strings.Contains(out, " AES-256-GCM") {
		t.Errorf("--help does not name the cipher the format uses (XAES-256-GCM):\n%s", out)
	}
}

// verify reads no data unless asked, and --read-data takes its percentage
// with a space as with '='.
func TestVerifyReadData(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 3, 40, 50000)
	e.must("backup", src)
	if out := e.must("verify"); strings.Contains(out, "read ") {
		t.Errorf("plain verify read data:\n%s", out)
	}
	if out := e.must("verify", "--help"); strings.Contains(out, `default "100%"`) {
		t.Errorf("verify --help claims --read-data defaults to 100%%:\n%s", out)
	}
	for _, args := range [][]string{{"--read-data", "50%"}, {"--read-data=50%"}, {"--read-data", "50"}, {"--read-data"}} {
		if out := e.must(append([]string{"verify"}, args...)...); !strings.Contains(out, "read ") || !strings.Contains(out, "no errors found") {
			t.Errorf("verify %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// One vocabulary: --target is where a restore goes, --snapshot names a
// snapshot, --from-repo/--to-repo name repositories; the old spellings
// still work, hidden from the help, on the command line and in the config
// file. Sizes and rates are in IEC units.
func TestFlagVocabulary(t *testing.T) {
	t.Parallel()
	src := newEnv(t)
	src.must("init")
	tree := filepath.Join(src.dir, "tree")
	writeTree(t, tree, 5, 20, 20000)
	src.must("backup", tree)
	spf := filepath.Join(src.dir, "srcpass")
	writeFile(t, spf, src.pass, 0o600)

	dst := newEnv(t)
	dst.must("init")
	out := dst.must("copy", "--from-repo", src.repo, "--to-repo", dst.repo, "--from-password-file", spf, "--all")
	if !strings.Contains(out, "MiB/s") || strings.Contains(out, "MB/s") {
		t.Errorf("copy does not print its rate in MiB/s:\n%s", out)
	}
	// The old names.
	if r := dst.run("copy", "--from", src.repo, "--to", dst.repo, "--from-password-file", spf, "--all"); r.code != 0 || !strings.Contains(r.stdout, "already copied") {
		t.Errorf("copy --from --to: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	cfg := filepath.Join(dst.dir, "nestguard.toml")
	writeFile(t, cfg, fmt.Sprintf("[copy]\nfrom = %q\nfrom-password-file = %q\n", src.repo, spf), 0o600)
	if r := dst.run("--config", cfg, "copy", "--all"); r.code != 0 || !strings.Contains(r.stdout, "already copied") {
		t.Errorf("copy with 'from' in the config file: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, cmd := range [][]string{{"copy"}, {"pg", "restore"}} {
		help := dst.must(append(cmd, "--help")...)
		for _, old := range []string{"--from ", "--to ", "--target-dir", "--from string"} {
			if strings.Contains(help, old) {
				t.Errorf("%s --help shows the old spelling %q", strings.Join(cmd, " "), old)
			}
		}
	}
	pgHelp := dst.must("pg", "restore", "--help")
	for _, want := range []string{"-t, --target string", "--snapshot string"} {
		if !strings.Contains(pgHelp, want) {
			t.Errorf("pg restore --help lacks %q", want)
		}
	}
	// pg restore: --target and its old spelling --target-dir, --snapshot
	// and its old spelling --from (no PostgreSQL needed: both are refused
	// later, for want of a base backup).
	dir := filepath.Join(dst.dir, "pgr")
	pf := filepath.Join(dst.dir, "pass")
	writeFile(t, pf, dst.pass, 0o600)
	for _, args := range [][]string{
		{"--target", dir, "--snapshot", "00000000"},
		{"-t", dir, "--snapshot", "00000000"},
		{"--target-dir", dir, "--from", "00000000"},
	} {
		r := dst.run(append([]string{"--password-file", pf, "pg", "restore", "--to-latest"}, args...)...)
		if r.code != 1 || strings.Contains(r.stderr, "unknown") && strings.Contains(r.stderr, "flag") {
			t.Errorf("pg restore %s: exit %d:\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if r := dst.run("pg", "restore", "--to-latest"); r.code != 2 || !strings.Contains(r.stderr, "--target is required") {
		t.Errorf("pg restore without --target: exit %d:\n%s", r.code, r.stderr)
	}
}

// SIGINT and SIGTERM stop a backup with exit 130 and 143, saying that no
// snapshot was saved and what the next backup reuses; it does, and the
// repository verifies clean.
func TestInterruptedBackup(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	for i := range 5 {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("big%d", i)), randomBytes(48<<20, 24, uint64(i)), 0o644)
	}
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
		code int
	}{{syscall.SIGINT, "SIGINT", 130}, {syscall.SIGTERM, "SIGTERM", 143}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.must("init")
			c := e.cmd("backup", src)
			var so, se strings.Builder
			c.Stdout, c.Stderr = &so, &se
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			e.waitForPacks(c, 2)
			c.Process.Signal(tc.sig)
			c.Wait()
			code := c.ProcessState.ExitCode()
			if code != tc.code || !strings.Contains(se.String(), "interrupted ("+tc.name+"): no snapshot was saved") ||
				!strings.Contains(se.String(), "the next backup reuses their data") {
				t.Fatalf("backup stopped by %s: exit %d, want %d:\n%s%s", tc.name, code, tc.code, so.String(), se.String())
			}
			t.Logf("%s", se.String())
			var n int
			if _, err := fmt.Sscanf(se.String()[strings.Index(se.String(), "the "):], "the %d pack", &n); err != nil || n != countFiles(t, filepath.Join(e.repo, "data")) {
				t.Errorf("the message counts %d packs (%v), the repository holds %d", n, err, countFiles(t, filepath.Join(e.repo, "data")))
			}
			if out := e.must("snapshots", "--json"); strings.Contains(out, `"id"`) {
				t.Errorf("an interrupted backup saved a snapshot:\n%s", out)
			}
			v := e.backupJSON(src)
			if added, total := summary(v, "data_added"), summary(v, "total_bytes"); added >= total {
				t.Errorf("the next backup added %d of %d bytes: it did not reuse what was stored", added, total)
			}
			out := e.must("verify", "--read-data")
			if !strings.Contains(out, "no errors found") || strings.Contains(out, "not indexed") {
				t.Errorf("verify after the interrupted backup and the next:\n%s", out)
			}
		})
	}
}
