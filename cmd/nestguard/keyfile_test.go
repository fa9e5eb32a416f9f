package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A generated key file opens the repository without the passphrase, fast
// enough for archive_command, and its slot can be revoked.
func TestKeyFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fullKDF = true // the passphrase's unlock is timed against the key file's
	e.must("init")
	kf := filepath.Join(e.dir, "wal.key")
	e.must("key", "add", "--generate-key-file", kf, "--label", "archive")
	if fi, err := os.Stat(kf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v mode %v", err, fi.Mode())
	}
	if r := e.run("key", "add", "--generate-key-file", kf); r.code == 0 {
		t.Error("overwrote an existing key file")
	}
	nopass := *e
	nopass.pass = "wrong passphrase entirely"
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 7, 5, 1000)
	nopass.must("--key-file", kf, "backup", src)

	// Unlocking must not cost an Argon2id derivation: compare with the
	// passphrase, which does (time both, best of three).
	best := func(args ...string) time.Duration {
		b := time.Hour
		for range 3 {
			start := time.Now()
			nopass.must(args...)
			b = min(b, time.Since(start))
		}
		return b
	}
	withKey := best("--key-file", kf, "snapshots", "--json")
	withPass := time.Hour
	for range 3 {
		start := time.Now()
		e.must("snapshots", "--json")
		withPass = min(withPass, time.Since(start))
	}
	t.Logf("snapshots: %v with the key file, %v with the passphrase", withKey, withPass)
	if withKey >= withPass {
		t.Errorf("key file (%v) is not faster than the Argon2id passphrase (%v)", withKey, withPass)
	}

	var slot string
	for _, l := range strings.Split(e.must("key", "list"), "\n") {
		if strings.Contains(l, "archive") {
			slot = strings.Fields(l)[0]
		}
	}
	if slot == "" {
		t.Fatal("key list does not show the key file's slot")
	}
	e.must("key", "remove", slot)
	if r := nopass.run("--key-file", kf, "snapshots"); r.code != 1 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Errorf("revoked key file: exit %d: %s", r.code, r.stderr)
	}
}

// Key slots planted in keys/ by someone with write access to the storage
// (a malformed one, one whose KDF would take minutes and gigabytes, one
// whose label holds terminal escapes) neither block nor slow the owner's
// passphrase; `key list` shows them escaped and marked, and --key-slot
// tries one slot alone.
func TestPlantedKeySlots(t *testing.T) {
	t.Parallel()
	skipUnderFIPS(t, "plants Argon2id slots of XAES-256-GCM keys, which fips140=only refuses before any work (the unlock bounds are unit-tested in internal/repository)")
	e := newEnv(t)
	e.must("init")
	plant := func(content string) string {
		sum := sha256.Sum256([]byte(content))
		name := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(e.repo, "keys", name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}
	salt := `"` + strings.Repeat("A", 43) + `="`
	wrapped := `"` + strings.Repeat("A", 96) + `"`
	junk := plant(`{"kdf": "nothing"}`)
	huge := plant(`{"repository": "planted", "kdf": {"algorithm": "argon2id", "time": 100, "memory_kib": 4194304, "threads": 255, "salt": ` + salt + `}, "wrapped": ` + wrapped + `}`)
	escape := plant(`{"label": "evil\u001b[2J", "repository": "planted", "kdf": {"algorithm": "argon2id", "time": 1, "memory_kib": 64, "threads": 1, "salt": ` + salt + `}, "wrapped": ` + wrapped + `}`)

	r := e.run("snapshots")
	if r.code != 0 {
		t.Fatalf("the owner's passphrase beside planted slots: exit %d\n%s", r.code, r.stderr)
	}
	wrong := *e
	wrong.pass = "not the passphrase"
	r = wrong.run("snapshots")
	if r.code != 1 || !strings.Contains(r.stderr, "skipped 2 malformed") || !strings.Contains(r.stderr, junk[:8]) || !strings.Contains(r.stderr, huge[:8]) {
		t.Errorf("wrong passphrase: exit %d, want 1 naming the skipped slots:\n%s", r.code, r.stderr)
	}
	list := e.must("key", "list")
	if strings.Contains(list, "\x1b") || !strings.Contains(list, `evil\x1b[2J`) {
		t.Errorf("key list does not escape a stored label:\n%q", list)
	}
	if !strings.Contains(list, junk[:8]) || !strings.Contains(list, "malformed") {
		t.Errorf("key list does not show the malformed slot:\n%s", list)
	}
	var own string
	for _, l := range strings.Split(list, "\n") {
		if strings.HasPrefix(l, "*") {
			own = strings.Fields(l)[1]
		}
	}
	if own == "" {
		t.Fatalf("key list marks no current slot:\n%s", list)
	}
	e.must("--key-slot", own, "snapshots")
	if r := e.run("--key-slot", escape[:8], "snapshots"); r.code != 1 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Errorf("--key-slot naming another slot: exit %d\n%s", r.code, r.stderr)
	}
}

// A nestguard process writes no core file and is not dumpable: its
// /proc/PID/mem and environ belong to root, so another process of its user
// cannot read its memory to find the keys. It still opens
// --password-file <(...) and /dev/stdin (its own /proc/self/fd).
func TestProcessNotDumpable(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run nestguard as another user")
	}
	e := newEnv(t)
	e.cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	if err := os.Chmod(e.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// A process substitution and /dev/stdin, as that user.
	sh := exec.Command("bash", "-c", `"$0" --repo "$1" `+strings.Join(ngArgs([]string{"init"}), " ")+` --password-file <(echo "$2") && "$0" --repo "$1" snapshots --password-file /dev/stdin <<< "$2"`, ngBin, e.repo, e.pass)
	sh.Env = ngEnv(os.Environ())
	sh.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred}
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("password file from <(...) and /dev/stdin: %v\n%s", err, out)
	}
	// A command that waits on its passphrase (a FIFO): look at it meanwhile.
	fifo := filepath.Join(e.dir, "pass.fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	c := e.cmd("snapshots", "--password-file", fifo)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	proc := filepath.Join("/proc", strconv.Itoa(c.Process.Pid))
	// The process hardens itself as it starts, then waits on the FIFO
	// until written: give a loaded machine time to get it there.
	var owner uint32 = 65534
	for range 3000 {
		if fi, err := os.Stat(filepath.Join(proc, "environ")); err == nil {
			if owner = fi.Sys().(*syscall.Stat_t).Uid; owner == 0 {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	limits, _ := os.ReadFile(filepath.Join(proc, "limits"))
	if err := os.WriteFile(fifo, []byte(e.pass), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("snapshots: %v", err)
	}
	if owner != 0 {
		t.Errorf("%s/environ belongs to uid %d: the process is dumpable", proc, owner)
	}
	if !regexp.MustCompile(`Max core file size\s+0\s+0`).Match(limits) {
		t.Errorf("core files not disabled:\n%s", limits)
	}
}

// Files in keys/ whose names are not slot ids (shorter than a short id,
// or holding terminal escapes) are listed as malformed, escaped: `key
// list` panicked on a name shorter than 8 bytes.
func TestKeySlotOddNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	for _, name := range []string{"abc", "\x1b[2Jslot"} {
		if err := os.WriteFile(filepath.Join(e.repo, "keys", name), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := e.run("key", "list")
	if r.code != 0 || strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, "abc") || !strings.Contains(r.stdout, `\x1b[2J`) {
		t.Errorf("key list: exit %d\n%q\n%s", r.code, r.stdout, r.stderr)
	}
	wrong := *e
	wrong.pass = "not the passphrase"
	if r := wrong.run("snapshots"); r.code != 1 || strings.Contains(r.stderr, "\x1b") {
		t.Errorf("wrong passphrase: exit %d\n%q", r.code, r.stderr)
	}
}
