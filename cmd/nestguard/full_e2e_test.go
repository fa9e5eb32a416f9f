package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// smallRepo puts e's repository on a tmpfs of size MiB, skipping the test
// when that cannot be mounted (not root, no mount permission).
func smallRepo(t *testing.T, e *env, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := filepath.Join(e.dir, "small")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", size), "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	e.repo = filepath.Join(mnt, "repo")
	return mnt
}

// tempFiles lists the temporary files (.tmp-*) under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			fi, _ := d.Info()
			out = append(out, fmt.Sprintf("%s (%d bytes)", p, fi.Size()))
		}
		return nil
	})
	return out
}

// A backup and a copy that fill the storage fail saying the storage is
// full and what to do, and leave none of their temporary files behind;
// prune can then run (after forget) and free space.
func TestFullStorageLeavesNoTempFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	smallRepo(t, e, 20)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	writeRandom(t, filepath.Join(src, "a"), 6<<20, 4610)
	e.must("init")
	e.must("backup", src)
	for i := range 4 {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", i)), 8<<20, uint64(4611+i))
	}
	r := e.run("backup", src)
	if r.code != 1 {
		t.Fatalf("backup onto a full storage: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "storage is full") {
		t.Errorf("backup's error does not say the storage is full:\n%s", r.stderr)
	}
	if tmp := tempFiles(t, e.repo); len(tmp) > 0 {
		t.Errorf("the failed backup left its temporary files: %s", strings.Join(tmp, ", "))
	}

	from := newEnv(t)
	from.must("init")
	from.must("backup", src)
	e.extraEnv = append(e.extraEnv, "NESTGUARD_FROM_PASSWORD="+from.pass)
	r = e.run("copy", "--from", from.repo, "latest")
	if r.code != 1 {
		t.Fatalf("copy onto a full storage: exit %d\n%s", r.code, r.stderr)
	}
	if tmp := tempFiles(t, e.repo); len(tmp) > 0 {
		t.Errorf("the failed copy left its temporary files: %s", strings.Join(tmp, ", "))
	}

	e.must("forget", "--keep-last", "1")
	e.must("prune", "--grace", "0", "--max-unused", "0%")
	e.must("verify", "--read-data")
}
