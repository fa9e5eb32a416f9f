package main

// Tests of a hostile round on file backup and restore fidelity (stop 45):
// each failed before its mend.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRestoreMtimeAfter2262: an mtime the file system keeps (ext4, tmpfs,
// xfs: year 2400) but that time.Time.UnixNano cannot hold comes back from
// a restore as it was, not as an overflowed value, and the restore does
// not say "done" with another time.
func TestRestoreMtimeAfter2262(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	p := filepath.Join(src, "future")
	os.WriteFile(p, []byte("from the future"), 0o644)
	want := time.Date(2400, 1, 1, 0, 0, 0, 987654321, time.UTC)
	ts := []unix.Timespec{{Sec: want.Unix(), Nsec: int64(want.Nanosecond())}, {Sec: want.Unix(), Nsec: int64(want.Nanosecond())}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0); err != nil {
		t.Skipf("cannot set a year-2400 mtime here: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil || !time.Unix(st.Mtim.Unix()).Equal(want) {
		t.Skipf("this file system does not keep a year-2400 mtime (%v)", err)
	}
	e.must("init")
	e.must("backup", src)
	tgt := filepath.Join(e.dir, "r")
	e.must("restore", "latest", "--target", tgt)
	if err := unix.Stat(filepath.Join(tgt, p), &st); err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(st.Mtim.Unix()).UTC(); !got.Equal(want) {
		t.Errorf("restored mtime %v, want %v", got, want)
	}
}

// TestRestoreDoesNotAddACLs: a restore into an (empty) target whose
// directory has a default ACL gives the restored entries exactly the
// snapshot's extended attributes: no ACL the snapshot does not have.
func TestRestoreDoesNotAddACLs(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("setfacl"); err != nil {
		t.Skip("no setfacl")
	}
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "f"), []byte("no ACL"), 0o640)
	tgt := filepath.Join(e.dir, "r")
	os.Mkdir(tgt, 0o755)
	if out, err := exec.Command("setfacl", "-d", "-m", "u:4444:rwx", tgt).CombinedOutput(); err != nil {
		t.Skipf("setfacl: %v %s", err, out)
	}
	e.must("init")
	e.must("backup", src)
	e.must("restore", "latest", "--target", tgt)
	for _, rel := range []string{"d", "d/f"} {
		want := xattrsOf(t, filepath.Join(src, rel))
		got := xattrsOf(t, filepath.Join(tgt, src, rel))
		if !slices.Equal(got, want) {
			t.Errorf("%s: restored extended attributes %q, snapshot has %q", rel, got, want)
		}
	}
}

// TestBackupPathThroughSymlink: a backup path with a symlinked directory
// on the way (/lib/os-release on a merged-/usr system, /home/alice with
// /home -> /data/home) saves the file it names: 'ls PATH' finds it, verify
// and restore agree, and the restored file has its content. (nestguard
// saved only the symlink, said "files: 1 new", and restore said "1 files"
// while writing none.)
func TestBackupPathThroughSymlink(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "real", "d"), 0o755)
	os.WriteFile(filepath.Join(src, "real", "d", "f"), []byte("the data"), 0o644)
	if err := os.Symlink("real", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(src, "link", "d", "f")
	e.must("init")
	r := e.run("backup", path)
	if r.code != 0 {
		t.Fatalf("backup %s: exit %d\n%s", path, r.code, r.stderr)
	}
	if r := e.run("ls", "latest", path); r.code != 0 {
		t.Errorf("ls latest %s: exit %d: %s (the snapshot does not hold the path it was asked to back up)", path, r.code, r.stderr)
	}
	tgt := filepath.Join(e.dir, "r")
	e.must("restore", "latest", "--target", tgt)
	got, err := os.ReadFile(filepath.Join(tgt, path))
	if err != nil || string(got) != "the data" {
		t.Errorf("restored %s: %q, %v; want %q", path, got, err, "the data")
	}
}

// TestTagNotUTF8: a tag given as bytes that are not UTF-8 is either
// refused (usage error) or kept exactly, so that 'snapshots --tag' and
// 'forget --keep-tag' with the same bytes find the snapshot. (nestguard
// stored it with U+FFFD in place of the byte: snapshots --tag found
// nothing, and forget --keep-tag would remove the snapshot it names.)
func TestTagNotUTF8(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	e.must("init")
	tag := "keep\xfe"
	r := e.run("backup", src, "--tag", tag)
	if r.code == 2 {
		return // refused: fine
	}
	if r.code != 0 {
		t.Fatalf("backup --tag %q: exit %d\n%s", tag, r.code, r.stderr)
	}
	e.must("backup", src)
	out := e.must("snapshots", "--tag", tag)
	if strings.Contains(out, "0 snapshots") {
		t.Errorf("snapshots --tag %q finds nothing after backup --tag %q:\n%s", tag, tag, out)
	}
	out = e.must("forget", "--keep-last", "1", "--keep-tag", tag, "--dry-run")
	if strings.Contains(out, "would remove") {
		t.Errorf("forget --keep-tag %q would remove the snapshot tagged %q:\n%s", tag, tag, out)
	}
}

// TestRestoreDeepDirMetadata: a directory whose path below the target
// is longer than PATH_MAX (the snapshot's path fits, the target adds the
// rest) gets its mode and mtime back, or the restore says it did not
// (exit 3). nestguard logged "cannot restore mode/times: file name too
// long" and exited 0.
func TestRestoreDeepDirMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	p := src
	os.MkdirAll(p, 0o755)
	for i := 0; len(p)+260 < 3900; i++ {
		p = filepath.Join(p, fmt.Sprintf("%s%02d", strings.Repeat("e", 250), i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(p, "leaf"), []byte("deep"), 0o644)
	want := time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC)
	os.Chmod(p, 0o711)
	os.Chtimes(p, want, want)
	e.must("init")
	e.must("backup", src)
	tgt := filepath.Join(e.dir, strings.Repeat("T", 200), strings.Repeat("U", 200))
	r := e.run("restore", "latest", "--target", tgt)
	if r.code != 0 {
		if r.code != 3 {
			t.Fatalf("restore: exit %d\n%s", r.code, r.stderr)
		}
		return // reported: fine
	}
	// Walk down by descriptors: the path is too long for one call.
	fd, err := unix.Open(tgt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		nfd, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = nfd
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o711 || !time.Unix(st.Mtim.Unix()).Equal(want) {
		t.Errorf("restore exit 0, but the deepest directory has mode %o mtime %v; snapshot: 711, %v\n%s",
			st.Mode&0o7777, time.Unix(st.Mtim.Unix()).UTC(), want, r.stderr)
	}
}

// TestBackupLinkWithSlash: 'backup LINK/' names the directory the link
// leads to (POSIX; tar, rsync and cp -r follow it): its files are saved
// under the link's name. 'backup LINK' saves the link itself. (nestguard
// saved only the link for both, "0 new", exit 0.)
func TestBackupLinkWithSlash(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "b", "f"), []byte("1"), 0o644)
	lnk := filepath.Join(src, "lnk")
	if err := os.Symlink("a", lnk); err != nil {
		t.Fatal(err)
	}
	e.must("init")
	e.must("backup", lnk+"/")
	if out := e.must("ls", "latest", lnk+"/b/f"); !strings.Contains(out, "b/f") {
		t.Errorf("ls after backup %s/: %s", lnk, out)
	}
	tgt := filepath.Join(e.dir, "r")
	e.must("restore", "latest", "--target", tgt)
	if got, err := os.ReadFile(filepath.Join(tgt, lnk, "b", "f")); err != nil || string(got) != "1" {
		t.Errorf("restored %s/b/f: %q %v", lnk, got, err)
	}
	e.must("backup", lnk)
	if out := e.must("ls", "-l", "latest", lnk); !strings.HasPrefix(out, "l") {
		t.Errorf("backup %s (no slash) did not save the link: %s", lnk, out)
	}
}

// TestRestoreOverwriteReadOnlyDirs: a restore --overwrite, as a user, over
// that user's own earlier restore of directories of mode 0500 restores
// into them and leaves them 0500. (It failed in each such directory,
// exit 3: the earlier restore had set the snapshot's mode.)
func TestRestoreOverwriteReadOnlyDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the restores as another user")
	}
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "ro"), 0o755)
	os.WriteFile(filepath.Join(src, "ro", "f"), []byte("data"), 0o644)
	os.Chmod(filepath.Join(src, "ro"), 0o500)
	e.must("init")
	e.must("backup", src)
	filepath.Walk(e.repo, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			os.Chmod(p, fi.Mode().Perm()|0o555)
		}
		return nil
	})
	nobody := filepath.Join(e.dir, "nobody")
	os.Mkdir(nobody, 0o777)
	os.Chmod(nobody, 0o777)
	tgt := filepath.Join(nobody, "r")
	e.cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	defer func() { e.cred = nil }()
	e.must("restore", "latest", "--target", tgt)
	if r := e.run("restore", "latest", "--target", tgt, "--overwrite"); r.code != 0 {
		t.Fatalf("restore --overwrite over the earlier restore, as nobody: exit %d\n%s", r.code, r.stderr)
	}
	fi, err := os.Stat(filepath.Join(tgt, src, "ro"))
	if err != nil || fi.Mode().Perm() != 0o500 {
		t.Errorf("the directory after the restores: %v %v, want 0500", fi.Mode(), err)
	}
}
