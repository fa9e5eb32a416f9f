package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeNonUTF8Tree creates names that are not UTF-8 beside ones that are:
// a Latin-1 name and the same name in UTF-8 in one directory, bytes 0xff
// 0xfe and 0xfe 0xff, a symlink whose target is not UTF-8, a directory whose name is not
// UTF-8 with files in it, and a lone invalid name in a directory of its own.
func writeNonUTF8Tree(t *testing.T, src string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "dir-\xe9", "sub"), 0o755))
	must(os.MkdirAll(filepath.Join(src, "lone"), 0o755))
	for name, data := range map[string]string{
		"Stra\xdfe.txt":          "latin-1",
		"Stra\u00dfe.txt":        "utf-8",
		"\xff\xfe":               "ff fe",
		"plain.txt":              "plain",
		"dir-\xe9/f1":            "in a latin-1 directory",
		"dir-\xe9/sub/g\xfe\xff": "deeper",
		"lone/only-\xe9.txt":     "lone",
	} {
		must(os.WriteFile(filepath.Join(src, name), []byte(data), 0o640))
	}
	must(os.Symlink("Stra\xdfe.txt", filepath.Join(src, "link")))
	must(os.Symlink("/nowhere/\xe9t\xe9", filepath.Join(src, "dangling-\xff")))
}

// Names that are not UTF-8 are bytes like any others: backup, ls, diff,
// restore (byte for byte), --include, copy and stats keep them exactly,
// and text and JSON output show them unambiguously.
func TestNonUTF8Names(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	writeNonUTF8Tree(t, src)
	e.must("init")
	e.must("backup", src)

	tgt := filepath.Join(e.dir, "restore")
	e.must("restore", "latest", "--target", tgt)
	compareTrees(t, src, filepath.Join(tgt, src))

	// ls: names not UTF-8 quoted, with \xNN for each raw byte.
	ls := e.must("ls", "latest", src)
	for _, want := range []string{
		`"` + src + `/Stra\xdfe.txt"`, src + "/Straße.txt", `"` + src + `/\xff\xfe"`,
		`"` + src + `/dir-\xe9/sub/g\xfe\xff"`, `"` + src + `/lone/only-\xe9.txt"`, src + "/plain.txt",
	} {
		if !slices.Contains(strings.Split(ls, "\n"), want) {
			t.Errorf("ls lacks the line %s:\n%s", want, ls)
		}
	}
	// ls --json: path, and path_bytes with the exact bytes.
	var entries []struct {
		Path      string `json:"path"`
		PathBytes []byte `json:"path_bytes"`
	}
	if err := json.Unmarshal([]byte(e.must("ls", "--json", "latest", src)), &entries); err != nil {
		t.Fatal(err)
	}
	var exact []string
	for _, en := range entries {
		p := en.Path
		if en.PathBytes != nil {
			p = string(en.PathBytes)
		}
		exact = append(exact, p)
	}
	for _, want := range []string{src + "/Stra\xdfe.txt", src + "/Straße.txt", src + "/\xff\xfe", src + "/dangling-\xff"} {
		if !slices.Contains(exact, want) {
			t.Errorf("ls --json lacks %q: %q", want, exact)
		}
	}
	// ls of a directory named by its exact bytes.
	if ls := e.must("ls", "latest", src+"/dir-\xe9"); !strings.Contains(ls, `"`+src+`/dir-\xe9/f1"`) {
		t.Errorf("ls of a directory not UTF-8:\n%s", ls)
	}

	// diff names the changed file exactly.
	if err := os.WriteFile(filepath.Join(src, "Stra\xdfe.txt"), []byte("changed"), 0o640); err != nil {
		t.Fatal(err)
	}
	e.must("backup", src)
	var snaps []map[string]any
	if err := json.Unmarshal([]byte(e.must("snapshots", "--json")), &snaps); err != nil || len(snaps) != 2 {
		t.Fatalf("snapshots: %v %d", err, len(snaps))
	}
	first := snaps[0]["short_id"].(string)
	// (The directories above the file changed mtime: U lines.)
	if diff := e.must("diff", first, "latest"); !strings.HasSuffix(diff, "\nM  \""+src+`/Stra\xdfe.txt"`+"\n") || strings.Count(diff, "M ") != 1 {
		t.Errorf("diff:\n%s", diff)
	}
	var d struct {
		Changes []struct {
			Path      string `json:"path"`
			PathBytes []byte `json:"path_bytes"`
		} `json:"changes"`
	}
	err := json.Unmarshal([]byte(e.must("diff", "--json", first, "latest")), &d)
	if last := len(d.Changes) - 1; err != nil || last < 0 || string(d.Changes[last].PathBytes) != src+"/Stra\xdfe.txt" ||
		d.Changes[last].Path != src+`/Stra\xdfe.txt` || d.Changes[0].PathBytes != nil {
		t.Errorf("diff --json: %v %+v", err, d)
	}

	// --include takes the exact bytes.
	part := filepath.Join(e.dir, "part")
	e.must("restore", "latest", "--target", part, "--include", src+"/dir-\xe9")
	compareTrees(t, filepath.Join(src, "dir-\xe9"), filepath.Join(part, src, "dir-\xe9"))
	if _, err := os.Lstat(filepath.Join(part, src, "Stra\xdfe.txt")); err == nil {
		t.Error("--include restored more than asked")
	}

	// A backup path that is not UTF-8 is kept in the snapshot.
	e.must("backup", src+"/dir-\xe9")
	if err := json.Unmarshal([]byte(e.must("snapshots", "--json")), &snaps); err != nil || len(snaps) != 3 {
		t.Fatalf("snapshots: %v %d", err, len(snaps))
	}
	if pb := snaps[2]["paths_bytes"]; pb == nil || snaps[2]["paths"].([]any)[0] != src+`/dir-\xe9` {
		t.Errorf("snapshots --json of a path not UTF-8: %v", snaps[2])
	}
	if out := e.must("snapshots"); !strings.Contains(out, `"`+src+`/dir-\xe9"`) {
		t.Errorf("snapshots:\n%s", out)
	}

	// copy re-encodes every tree; the copy restores the same bytes.
	to := newEnv(t)
	to.must("init")
	to.extraEnv = append(to.extraEnv, "NESTGUARD_FROM_PASSWORD="+e.pass)
	to.must("copy", "--from", e.repo, "--all")
	var copies []map[string]any
	if err := json.Unmarshal([]byte(to.must("snapshots", "--json")), &copies); err != nil || len(copies) != 3 {
		t.Fatalf("copied snapshots: %v %d", err, len(copies))
	}
	tgt2 := filepath.Join(to.dir, "restore")
	to.must("restore", copies[1]["short_id"].(string), "--target", tgt2)
	compareTrees(t, src, filepath.Join(tgt2, src))
	to.must("stats")
	e.must("stats")
	e.must("verify", "--read-data")
}

// An include that names nothing in the snapshot is an error that names it
// and the snapshot's paths; nothing is written.
func TestRestoreIncludeMatchesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "hosts"), []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.must("init")
	e.must("backup", src)
	tgt := filepath.Join(e.dir, "restore")
	r := e.run("restore", "latest", "--target", tgt, "--include", "/etc/apt")
	if r.code != 1 || !strings.Contains(r.stderr, "--include /etc/apt matches nothing") || !strings.Contains(r.stderr, src) {
		t.Errorf("restore --include of a path not in the snapshot: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(tgt); !os.IsNotExist(err) {
		t.Errorf("the target was created: %v", err)
	}
	// One include that matches and one that does not: still an error.
	r = e.run("restore", "latest", "--target", tgt, "--include", src+"/etc", "--include", src+"/etc/apt")
	if r.code != 1 || !strings.Contains(r.stderr, src+"/etc/apt") {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
	e.must("restore", "latest", "--target", tgt, "--include", src+"/etc/hosts")
	if _, err := os.Stat(filepath.Join(tgt, src, "etc", "hosts")); err != nil {
		t.Error(err)
	}
}
