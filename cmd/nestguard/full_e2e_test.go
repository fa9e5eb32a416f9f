package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s; detaching it", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
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

// fill writes p until the file system holding it is full, with mtime
// age ago.
func fill(t *testing.T, p string, age time.Duration) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
}

// On a full storage, prune first removes temporary files older than a
// day (a killed writer's) to make room for its lock record. When only a
// running writer's temporary files fill it, prune removes nothing of
// theirs and says how to make room.
func TestPruneOnFullStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	smallRepo(t, e, 8)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	writeRandom(t, filepath.Join(src, "a"), 1<<20, 4620)
	e.must("init")
	e.must("backup", src)
	e.must("backup", src)

	stale := filepath.Join(e.repo, ".tmp-killed")
	fill(t, stale, 25*time.Hour)
	e.must("forget", "--keep-last", "1")
	r := e.run("prune", "--grace", "0")
	if r.code != 0 {
		t.Fatalf("prune on a storage filled by a stale temporary file: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("prune left the stale temporary file: %v", err)
	}

	fresh := filepath.Join(e.repo, ".tmp-running")
	fill(t, fresh, 0)
	r = e.run("prune", "--grace", "0")
	if r.code != 1 {
		t.Fatalf("prune on a full storage: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"storage is full", ".tmp-* files that are older than every nestguard command still running", "grow the volume"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("prune's error on a full storage lacks %q:\n%s", want, r.stderr)
		}
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("prune removed a running writer's temporary file: %v", err)
	}
}

// A repack that finds the storage full says so, not that the pack may be
// damaged.
func TestPruneRepackOnFullStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	smallRepo(t, e, 56)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	// Packs half used once the b files are forgotten: a repack of more
	// than a pack of live blobs.
	for i := range 20 {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("a%02d", i)), 1<<20, uint64(4630+2*i))
		writeRandom(t, filepath.Join(src, fmt.Sprintf("b%02d", i)), 1<<20, uint64(4631+2*i))
	}
	e.must("init")
	e.must("backup", src)
	for i := range 20 {
		os.Remove(filepath.Join(src, fmt.Sprintf("b%02d", i)))
	}
	e.must("backup", src)
	e.must("forget", "--keep-last", "1")
	filler := filepath.Join(e.repo, ".tmp-running")
	fill(t, filler, 0)
	// Room for prune's records, not for the repacked blobs.
	if err := os.Truncate(filler, max(0, fileSize(t, filler)-256<<10)); err != nil {
		t.Fatal(err)
	}
	r := e.run("prune", "--grace", "0", "--max-unused", "0%")
	if r.code != 1 {
		t.Fatalf("prune repacking onto a full storage: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "storage is full") || strings.Contains(r.stderr, "verify --read-data") {
		t.Errorf("prune's repack on a full storage is not worded as a full storage:\n%s", r.stderr)
	}
	os.Remove(filler)
	e.must("verify", "--read-data")
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
