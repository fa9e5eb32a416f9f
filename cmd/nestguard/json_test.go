package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// jsonKeys decodes out, an object or an array of objects (then its first
// element), and returns its keys, sorted.
func jsonKeys(t *testing.T, what, out string) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	if a, ok := v.([]any); ok {
		if len(a) == 0 {
			t.Fatalf("%s: an empty array", what)
		}
		v = a[0]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: not an object: %s", what, out)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkJSON fails unless out has exactly the keys want (docs/json.md;
// those ending in "?" may be missing), and, for an object, json_version 1.
func checkJSON(t *testing.T, what, out, want string) {
	t.Helper()
	checkKeys(t, what, out, want)
	var doc struct {
		Version *int `json:"json_version"`
	}
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Version == nil || *doc.Version != jsonVersion {
			t.Errorf("%s --json: json_version is not %d: %s", what, jsonVersion, out)
		}
	}
}

// checkKeys fails unless out, an object or an array of objects (then its
// first element) within a document, has exactly the keys want, as
// checkJSON.
func checkKeys(t *testing.T, what, out, want string) {
	t.Helper()
	got := jsonKeys(t, what, out)
	var w []string
	for _, k := range strings.Fields(want) {
		if opt, ok := strings.CutSuffix(k, "?"); !ok || slices.Contains(got, opt) {
			w = append(w, opt)
		}
	}
	slices.Sort(w)
	if !slices.Equal(got, w) {
		t.Errorf("%s --json: keys\n  %s\nwant (docs/json.md)\n  %s", what, strings.Join(got, " "), strings.Join(w, " "))
	}
}

// TestJSONContract: every command's --json document has the fields
// docs/json.md lists, no more and no fewer, so that a renamed or dropped
// field fails here before it breaks a script.
func TestJSONContract(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "f"), []byte("contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(want string, args ...string) string {
		t.Helper()
		out := e.must(append(args, "--json")...)
		checkJSON(t, strings.Join(args, " "), out, want)
		return out
	}
	check("json_version repository id config", "init")
	check("json_version snapshot short_id summary errors changed_while_read? duration_seconds", "backup", src)
	if err := os.WriteFile(filepath.Join(src, "d", "g"), []byte("more"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("json_version snapshot short_id summary errors changed_while_read? duration_seconds", "backup", src)
	check("id short_id time kind hostname username paths tags tree summary class? keep_until?", "snapshots")
	check("path type size mode mtime", "ls", "latest")
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.must("snapshots", "--json")), &list); err != nil || len(list) != 2 {
		t.Fatalf("snapshots --json: %v %v", list, err)
	}
	check("json_version from to changes", "diff", list[0].ID, list[1].ID)
	check("json_version snapshot target files files_total dirs bytes bytes_total errors", "restore", "latest", "--target", filepath.Join(e.dir, "r"))
	check("json_version ok report", "verify")
	check("json_version packs_indexed removed kept bad_packs candidate_packs", "repair", "index")
	check("json_version dry_run snapshots packs bytes used_bytes unused_bytes repacked repacked_blobs repacked_bytes_written marked? pending deleted resurrected index_replaced records_removed retained wal_removed warnings errors duration_seconds wal_expiry?", "prune", "--grace", "0")
	check("json_version snapshots logical_size files unique_size blobs stored_size packs dedup_ratio compression_ratio total_ratio index_memory_bytes index_bytes_per_blob config", "stats")
	pw := filepath.Join(e.dir, "pw2")
	if err := os.WriteFile(pw, []byte("second passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("json_version id", "key", "add", "--new-password-file", pw)
	check("json_version id key_file", "key", "add", "--generate-key-file", filepath.Join(e.dir, "kf"))
	check("id created username hostname kdf current", "key", "list")
	hold := "json_version snapshot case action objects changed kept enforced recorded record"
	check(hold, "hold", "add", "latest", "--case", "C-1", "--reason", "test", "--record-only")
	check("json_version active history unreadable partial", "hold", "list")
	check(hold, "hold", "release", "latest", "--case", "C-1", "--reason", "test")
	forget := "json_version dry_run groups kept removed retained failed unreadable prune?"
	check(forget, "forget", "--keep-last", "1", "--dry-run")
	out := check(forget, "forget", "--keep-last", "1")
	var fg struct {
		Groups []map[string]json.RawMessage `json:"groups"`
	}
	if err := json.Unmarshal([]byte(out), &fg); err != nil || len(fg.Groups) != 1 {
		t.Fatalf("forget --json: %v\n%s", err, out)
	}
	checkKeys(t, "forget group", string(mustJSON(t, fg.Groups[0])), "group policy_from policy? reference_time? snapshots")
	checkKeys(t, "forget snapshot", string(fg.Groups[0]["snapshots"]), "id short_id time hostname paths tags class? keep_until? action reasons vetoes removed error? damaged?")
	check("json_version wal_files wal_stored_bytes wal_segment_size timelines gaps windows now rpo_seconds base_backups wal_expiry_boundaries", "pg", "status")

	to := newEnv(t)
	to.extraEnv = append(to.extraEnv, "NESTGUARD_FROM_PASSWORD="+e.pass)
	to.must("init")
	out = to.must("copy", "--from-repo", e.repo, "--all", "--json")
	checkJSON(t, "copy", out, "json_version copied skipped failed older_than_last_copy wal_copied audit_entries_copied blobs_read bytes_read blobs_new bytes_stored unreadable unreadable_expiry_records duration_seconds read_mib_per_second read_mb_per_s")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
