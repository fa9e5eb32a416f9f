package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFIPSRepository: 'init --fips' makes a repository that a nestguard
// running with GODEBUG=fips140=only (where Go's module refuses every
// primitive that is not FIPS 140-3 approved, many with a panic) uses end
// to end: backup, restore, verify --read-data, key add, list and remove,
// a key file, copy. In that mode init without --fips and a repository
// made without it are refused with a message saying so, and --fips with
// --id-hash blake3 is a usage error.
func TestFIPSRepository(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.run("init", "--fips", "--id-hash", "blake3"); r.code != 2 || !strings.Contains(r.stderr, "not FIPS 140-3 approved") {
		t.Errorf("--fips --id-hash blake3: exit %d: %s", r.code, r.stderr)
	}
	e.extraEnv = []string{"GODEBUG=fips140=only"}
	if !fipsTest {
		plain := newEnv(t)
		plain.must("init")
		plain.extraEnv = e.extraEnv
		if r := plain.run("snapshots"); r.code != 1 || !strings.Contains(r.stderr, "not FIPS 140-3 approved") || !strings.Contains(r.stderr, "init --fips") {
			t.Errorf("non-FIPS repository under fips140=only: exit %d: %s", r.code, r.stderr)
		}
		if r := e.run("init"); r.code != 2 || !strings.Contains(r.stderr, "add --fips") {
			t.Errorf("init without --fips under fips140=only: exit %d: %s", r.code, r.stderr)
		}
	}
	var created struct {
		Config struct {
			Algorithms map[string]string `json:"algorithms"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(e.must("init", "--fips", "--json")), &created); err != nil {
		t.Fatal(err)
	}
	a := created.Config.Algorithms
	if a["encryption"] != "AES-256-GCM-HKDF-SHA-256" || a["kdf"] != "pbkdf2-sha256" || a["blob_id"] != "HMAC-SHA-256" {
		t.Fatalf("init --fips recorded %v", a)
	}
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 17, 60, 300_000)
	e.must("backup", src)
	tgt := filepath.Join(e.dir, "restore")
	e.must("restore", "latest", "--target", tgt)
	compareTrees(t, src, filepath.Join(tgt, src))
	e.must("verify", "--read-data")
	checkObjectNames(t, e.repo, "SHA-256")

	// Key slots: a second passphrase (PBKDF2), a key file (HKDF), removal.
	pf := filepath.Join(e.dir, "second")
	writeFile(t, pf, "a second passphrase for FIPS\n", 0o600)
	e.must("key", "add", "--new-password-file", pf, "--label", "second")
	kf := filepath.Join(e.dir, "key")
	e.must("key", "add", "--generate-key-file", kf)
	list := e.must("key", "list", "--json")
	if strings.Count(list, "pbkdf2-sha256") != 2 || strings.Count(list, "hkdf-sha256") != 1 {
		t.Errorf("key list:\n%s", list)
	}
	other := *e
	other.pass = "a second passphrase for FIPS"
	other.must("snapshots")
	if r := e.run("--key-file", kf, "snapshots"); r.code != 0 {
		t.Errorf("snapshots with the key file: exit %d: %s", r.code, r.stderr)
	}
	var keys []struct {
		ID    string `json:"id"`
		Label string `json:"label"`
	}
	if err := json.Unmarshal([]byte(list), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Label == "second" {
			e.must("key", "remove", k.ID)
		}
	}
	if r := other.run("snapshots"); r.code == 0 {
		t.Error("a removed slot's passphrase still opens the repository")
	}
	if r := e.run("key", "add", "--new-password-file", writeTemp(t, e.dir, "short\n")); r.code == 0 || !strings.Contains(r.stderr, "at least 14") {
		t.Errorf("short passphrase for a FIPS slot: exit %d: %s", r.code, r.stderr)
	}

	// Copy into another FIPS repository.
	dst := newEnv(t)
	dst.extraEnv = []string{"GODEBUG=fips140=only", "NESTGUARD_FROM_PASSWORD=" + e.pass}
	dst.must("init", "--fips")
	dst.must("copy", "--from-repo", e.repo, "--all")
	out := filepath.Join(dst.dir, "out")
	dst.must("restore", "latest", "--target", out)
	compareTrees(t, src, filepath.Join(out, src))
	dst.must("verify", "--read-data")
}

func writeTemp(t *testing.T, dir, text string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "pass")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
