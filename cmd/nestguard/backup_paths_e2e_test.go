package main

// Tests of hostile round s45b: each fails before its mend.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBackupDanglingLinkWithSlashKeepsOthers: 'backup DANGLING/ DIR' (a
// symbolic link with a trailing slash whose target is gone: an unmounted
// data directory) must not save a snapshot without DIR and exit 0. The
// walk's error for the dangling argument dropped the whole common parent
// directory, DIR included, unrecorded: "snapshot saved", exit 0, and the
// snapshot held only the ancestors above it.
func TestBackupDanglingLinkWithSlashKeepsOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "b", "f"), []byte("1"), 0o644)
	if err := os.Symlink(filepath.Join(e.dir, "not-mounted"), filepath.Join(src, "dang")); err != nil {
		t.Fatal(err)
	}
	e.must("init")
	r := e.run("backup", filepath.Join(src, "dang")+"/", filepath.Join(src, "a"))
	if r.code == 0 {
		if out := e.must("ls", "latest"); !strings.Contains(out, filepath.Join(src, "a", "b", "f")) {
			t.Errorf("backup of %s/ and %s/a exited 0, but the snapshot lacks a/b/f:\n%s", filepath.Join(src, "dang"), src, out)
		}
	}
	r = e.run("backup", filepath.Join(src, "dang")+"/")
	if r.code == 0 {
		t.Errorf("backup of a dangling %s/ exited 0 (an empty snapshot): %s", filepath.Join(src, "dang"), r.stdout+r.stderr)
	}
}

// TestBackupOneFileSystem: with -x a directory on another file system is
// saved empty, as tar --one-file-system keeps it, so that a restored
// system has its mount points (nestguard left it out); and 'backup -x /
// /home' with /home on a file system of its own saves /home's contents: a
// path named on the command line is backed up whatever -x says about the
// paths above it, as tar, rsync and restic do (nestguard merged it into
// the selected parent, where -x kept it empty: exit 0, the snapshot's
// paths naming it, its contents absent).
func TestBackupOneFileSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	mnt := filepath.Join(src, "home")
	os.MkdirAll(mnt, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0750"); err != nil {
		t.Skipf("mount: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	os.WriteFile(filepath.Join(mnt, "inside"), []byte("y"), 0o644)
	e.must("init")
	e.must("backup", "-x", src)
	out := e.must("ls", "-l", "latest", src)
	if !strings.Contains(out, "drwxr-x--- ") || !strings.Contains(out, "/home") {
		t.Errorf("the mount point is not in the snapshot as a directory:\n%s", out)
	}
	if strings.Contains(out, "inside") {
		t.Errorf("-x crossed into the mount:\n%s", out)
	}
	r := e.run("backup", "-x", src, mnt)
	out = e.must("ls", "latest")
	if r.code != 0 || !strings.Contains(out, filepath.Join(mnt, "inside")) {
		t.Errorf("backup -x %s %s: exit %d, without %s/inside:\n%s", src, mnt, r.code, mnt, out)
	}
}

// TestBackupLinkAndPathBelowIt: 'backup LINK LINK/b' (LINK a symbolic link
// to a directory) saves LINK/b's contents, as 'backup LINK/b' alone does:
// the path below the link was merged into the link's selection, which
// saves only the link ("0 new ... 0 dirs", exit 0, the snapshot's paths
// naming LINK/b).
func TestBackupLinkAndPathBelowIt(t *testing.T) {
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
	r := e.run("backup", lnk, filepath.Join(lnk, "b"))
	if r.code != 0 {
		if r.code != 1 || !strings.Contains(r.stderr, "a symbolic link, which is saved as the link") {
			t.Errorf("backup %s %s/b: exit %d\n%s", lnk, lnk, r.code, r.stderr)
		}
		return // refused, saying why
	}
	if out := e.must("ls", "latest"); !strings.Contains(out, filepath.Join(lnk, "b", "f")) {
		t.Errorf("backup %s %s/b exited 0 without %s/b/f:\n%s", lnk, lnk, lnk, out)
	}
}
