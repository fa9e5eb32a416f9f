package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A generated key file opens the repository without the passphrase, fast
// enough for archive_command, and its slot can be revoked.
func TestKeyFile(t *testing.T) {
	e := newEnv(t)
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
