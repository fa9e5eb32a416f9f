package main

// End-to-end tests of issue 16's metadata and restore-safety items:
// extended attributes and ACLs, owners and times of special files, restore
// --overwrite through symlinks, sparse files, and restore summaries.

import (
	"bytes"
	"encoding/json"
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

// xattrsOf returns p's extended attributes (not following a symlink) as
// name=value lines, sorted.
func xattrsOf(t *testing.T, p string) []string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listing extended attributes of %s: %v", p, err)
	}
	var out []string
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, string(name), v)
		if err != nil {
			t.Fatalf("reading %s of %s: %v", name, p, err)
		}
		out = append(out, fmt.Sprintf("%q=%x", name, v[:m]))
	}
	slices.Sort(out)
	return out
}

func setXattr(t *testing.T, p, name string, v []byte) {
	t.Helper()
	if err := unix.Lsetxattr(p, name, v, 0); err != nil {
		t.Fatalf("setting %s on %s: %v", name, p, err)
	}
}

// TestXattrsAndACLs (issue 16 item 4): user.* attributes with binary and
// empty values, on files and directories, POSIX access and default ACLs,
// trusted.* and a file capability as root, come back from a restore; an
// attribute change alone (no new mtime) is seen by the next backup; and
// one that cannot be set on restore is named, exit 3.
func TestXattrsAndACLs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "dir"), 0o755)
	file := filepath.Join(src, "dir", "file")
	os.WriteFile(file, []byte("content"), 0o644)
	os.WriteFile(filepath.Join(src, "plain"), []byte("no attributes"), 0o644)
	os.Symlink("dir/file", filepath.Join(src, "link"))
	if err := unix.Lsetxattr(file, "user.probe", nil, 0); err != nil {
		t.Skipf("this file system takes no user extended attributes: %v", err)
	}
	setXattr(t, file, "user.binary", []byte{0, 1, 2, 0xff, 0xfe, 0})
	setXattr(t, file, "user.empty", nil)
	setXattr(t, filepath.Join(src, "dir"), "user.dir", []byte("on a directory"))
	// Linux allows no user.* attributes on symlinks (EPERM); trusted.* it
	// does, for root.
	root := os.Geteuid() == 0
	if root {
		setXattr(t, filepath.Join(src, "link"), "trusted.nestguard", []byte("on the link itself"))
		setXattr(t, file, "trusted.t", []byte("root only"))
	}
	if _, err := exec.LookPath("setfacl"); err != nil {
		t.Log("setfacl not installed (Debian package acl): ACLs not tested")
	} else {
		for _, args := range [][]string{
			{"-m", "u:65534:rw-,g:65534:r--", file},
			{"-d", "-m", "u:65534:rwx", filepath.Join(src, "dir")},
		} {
			if out, err := exec.Command("setfacl", args...).CombinedOutput(); err != nil {
				t.Fatalf("setfacl %v: %v\n%s", args, err, out)
			}
		}
	}
	if _, err := exec.LookPath("setcap"); err != nil || !root {
		t.Log("setcap not installed (Debian package libcap2-bin) or not root: file capabilities not tested")
	} else if out, err := exec.Command("setcap", "cap_net_bind_service=+ep", filepath.Join(src, "plain")).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v\n%s", err, out)
	}
	paths := []string{"dir", "dir/file", "plain", "link"}
	want := map[string][]string{}
	for _, p := range paths {
		want[p] = xattrsOf(t, filepath.Join(src, p))
	}
	if len(want["dir/file"]) < 3 {
		t.Fatalf("set-up: %v", want)
	}

	e.must("init")
	e.must("backup", src)
	check := func(tgt string) {
		t.Helper()
		for _, p := range paths {
			if got := xattrsOf(t, filepath.Join(tgt, src, p)); !slices.Equal(got, want[p]) {
				t.Errorf("%s: extended attributes restored\n  %v\nbacked up\n  %v", p, got, want[p])
			}
		}
	}
	tgt := filepath.Join(e.dir, "r1")
	e.must("restore", "latest", "--target", tgt)
	check(tgt)
	compareTrees(t, src, filepath.Join(tgt, src))

	// An attribute changed alone: the file's mtime stays, its ctime moves.
	fi, _ := os.Stat(file)
	setXattr(t, file, "user.binary", []byte("changed"))
	os.Chtimes(file, fi.ModTime(), fi.ModTime())
	want["dir/file"] = xattrsOf(t, file)
	e.must("backup", src)
	var snaps []map[string]any
	json.Unmarshal([]byte(e.must("snapshots", "--json")), &snaps)
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots", len(snaps))
	}
	if d := e.must("diff", snaps[0]["short_id"].(string), snaps[1]["short_id"].(string)); !strings.Contains(d, "U  "+file) {
		t.Errorf("diff does not show the attribute change of %s:\n%s", file, d)
	}
	tgt = filepath.Join(e.dir, "r2")
	e.must("restore", "latest", "--target", tgt)
	check(tgt)

	if !root {
		return
	}
	// trusted.* cannot be set without CAP_SYS_ADMIN: run as nobody.
	nobody := filepath.Join(e.dir, "nobody")
	os.Mkdir(nobody, 0o777)
	os.Chmod(nobody, 0o777)
	filepath.Walk(e.repo, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			os.Chmod(p, fi.Mode().Perm()|0o555)
		}
		return nil
	})
	e.cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	r := e.run("restore", "latest", "--target", filepath.Join(nobody, "r"))
	e.cred = nil
	if r.code != 3 || !strings.Contains(r.stderr, "trusted.t") || !strings.Contains(r.stderr, filepath.Join("dir", "file")) {
		t.Errorf("restore as nobody of a trusted.* attribute: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(nobody, "r", file)); err != nil || string(b) != "content" {
		t.Errorf("the file whose attribute could not be set: %q, %v", b, err)
	}
}

// TestSpecialFilesOwnerTimes (issue 16 item 5): symlinks, FIFOs and device
// nodes come back with their owner and mtime, and directories with theirs
// although entries were created in them; regular files with their owner,
// mode (set-ID bits included) and mtime.
func TestSpecialFilesOwnerTimes(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("setting owners and making device nodes needs root")
	}
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	entries := map[string]time.Time{}
	mk := []struct {
		name string
		make func(p string) error
	}{
		{"d/link", func(p string) error { return os.Symlink("/nonexistent/target", p) }},
		{"d/fifo", func(p string) error { return unix.Mkfifo(p, 0o640) }},
		{"d/null", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))) }},
	}
	for i, m := range mk {
		p := filepath.Join(src, m.name)
		if err := m.make(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, 1234+i, 2345+i); err != nil {
			t.Fatal(err)
		}
		mt := time.Date(2019, 3, 4, 5, 6, 7, 800+i, time.UTC)
		ts := []unix.Timespec{unix.NsecToTimespec(mt.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		entries[m.name] = mt
	}
	// Regular files get theirs on their descriptor once written: the
	// set-ID bits outlive the chown before them, a read-only file is
	// written, a file of one all-zero chunk is a hole of its size, an
	// empty file is made; compareTrees checks mode, owner, size and the
	// mtime to the nanosecond.
	for i, f := range []struct {
		name string
		mode os.FileMode
		data []byte
	}{
		{"d/setid", 0o755 | os.ModeSetuid | os.ModeSetgid, []byte("#!/bin/sh\n")},
		{"d/readonly", 0o444, []byte("read only")},
		{"d/zeros", 0o640, make([]byte, 100<<10)},
		{"d/empty", 0o600, nil},
	} {
		p := filepath.Join(src, f.name)
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 3456+i, 4567+i); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		mt := time.Date(2017, 6, 7, 8, 9, 10, 123456789+i, time.UTC)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	dmt := time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "d"), dmt, dmt)
	entries["d"] = dmt
	e.must("init")
	e.must("backup", src)
	tgt := filepath.Join(e.dir, "r")
	e.must("restore", "latest", "--target", tgt)
	for i, name := range []string{"d/link", "d/fifo", "d/null", "d"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(tgt, src, name), &st); err != nil {
			t.Fatal(err)
		}
		if i < 3 && (st.Uid != uint32(1234+i) || st.Gid != uint32(2345+i)) {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, 1234+i, 2345+i)
		}
		if got := time.Unix(st.Mtim.Unix()); !got.Equal(entries[name]) {
			t.Errorf("%s: mtime %v, want %v", name, got.UTC(), entries[name])
		}
	}
	compareTrees(t, src, filepath.Join(tgt, src))
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(tgt, src, "d/zeros"), &st); err != nil || st.Blocks != 0 {
		t.Errorf("d/zeros: %d blocks, want a hole (%v)", st.Blocks, err)
	}
}

// TestRestoreOverwriteSymlinks (issue 16 item 12): symlinks in the target,
// in place of a file, of a directory and of an ancestor directory, pointing
// outside it; restore --overwrite writes nothing outside and replaces them
// with the snapshot's entries. (A symlink swapped in while the restore
// runs is out of scope.)
func TestRestoreOverwriteSymlinks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "f"), []byte("restored f"), 0o644)
	os.WriteFile(filepath.Join(src, "g"), []byte("restored g"), 0o644)
	os.MkdirAll(filepath.Join(src, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "b", "h"), []byte("restored h"), 0o644)
	e.must("init")
	e.must("backup", src)

	outside := filepath.Join(e.dir, "outside")
	os.MkdirAll(outside, 0o755)
	for _, n := range []string{"f", "g", "h", "b/h"} {
		os.MkdirAll(filepath.Dir(filepath.Join(outside, n)), 0o755)
		os.WriteFile(filepath.Join(outside, n), []byte("outside "+n), 0o644)
	}
	tgt := filepath.Join(e.dir, "r")
	base := filepath.Join(tgt, src)
	os.MkdirAll(base, 0o755)
	os.Symlink(outside, filepath.Join(base, "d"))                     // a directory
	os.Symlink(filepath.Join(outside, "g"), filepath.Join(base, "g")) // a file
	os.Symlink(outside, filepath.Join(base, "a"))                     // an ancestor of b/h
	e.must("restore", "latest", "--target", tgt, "--overwrite")

	for _, n := range []string{"f", "g", "h", "b/h"} {
		if b, _ := os.ReadFile(filepath.Join(outside, n)); string(b) != "outside "+n {
			t.Errorf("restore wrote outside its target: %s holds %q", n, b)
		}
	}
	for p, want := range map[string]string{"d/f": "restored f", "g": "restored g", "a/b/h": "restored h"} {
		full := filepath.Join(base, p)
		if b, err := os.ReadFile(full); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", p, b, err)
		}
		for dir := full; dir != base; dir = filepath.Dir(dir) {
			if fi, err := os.Lstat(dir); err != nil || fi.Mode()&os.ModeSymlink != 0 {
				t.Errorf("%s is still a symlink (%v)", dir, err)
			}
		}
	}
	compareTrees(t, src, base)
}

// TestSparseFile (issue 16 item 27): the holes of a sparse file are not
// read, and it restores sparse and byte for byte.
func TestSparseFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	p := filepath.Join(src, "sparse.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const size = 256 << 20
	data := make([]byte, 1<<20)
	for _, off := range []int64{0, 100 << 20, 101<<20 + 4096, size - 1<<20} {
		data = randomBytes(len(data), 7, uint64(off))
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Truncate(size)
	f.Close()
	var st syscall.Stat_t
	syscall.Stat(p, &st)
	if st.Blocks*512 > 16<<20 {
		t.Skipf("this file system does not keep the file sparse (%d bytes allocated)", st.Blocks*512)
	}
	e.must("init")
	v := e.backupJSON(src)
	if got := summary(v, "bytes_read"); got > 8<<20 {
		t.Errorf("backing up a 256 MiB file with 4 MiB of data read %d bytes", got)
	}
	if got := summary(v, "data_added"); got > 64<<20 {
		t.Errorf("backing up a 256 MiB file with 4 MiB of data added %d bytes", got)
	}
	tgt := filepath.Join(e.dir, "r")
	e.must("restore", "latest", "--target", tgt)
	q := filepath.Join(tgt, p)
	syscall.Stat(q, &st)
	if st.Blocks*512 > 16<<20 || st.Size != size {
		t.Errorf("restored: %d bytes, %d allocated", st.Size, st.Blocks*512)
	}
	if a, b := fileHash(t, p), fileHash(t, q); a != b {
		t.Error("restored sparse file differs")
	}
}

func fileHash(t *testing.T, p string) string {
	t.Helper()
	h, err := hashFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h)
}

// TestRestoreSummaryCountsWhatHappened (issue 16 item 11): with a pack
// missing, the summary counts the files and bytes restored, not those the
// snapshot holds.
func TestRestoreSummaryCountsWhatHappened(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	for i := range 6 {
		// Larger than a pack: few files a pack.
		writeRandom(t, filepath.Join(src, fmt.Sprintf("file%d", i)), 6<<20, 9+uint64(i))
	}
	os.WriteFile(filepath.Join(src, "small.txt"), []byte("small"), 0o644)
	e.must("init")
	e.must("backup", src)
	packs := packFiles(t, e.repo)
	if len(packs) < 2 {
		t.Fatalf("%d packs", len(packs))
	}
	// Take away a pack of file contents, not one that holds trees (then
	// nothing would be restored): the first whose absence leaves the
	// snapshot listable.
	removed := false
	for _, p := range packs {
		os.Rename(p, p+".away")
		if e.run("ls", "latest").code == 0 {
			removed = true
			break
		}
		os.Rename(p+".away", p)
	}
	if !removed {
		t.Fatal("every pack holds trees")
	}

	r := e.run("restore", "latest", "--target", filepath.Join(e.dir, "r"), "--json")
	if r.code != 3 {
		t.Fatalf("restore with a pack missing: exit %d\n%s", r.code, r.stderr)
	}
	var v struct {
		Files, FilesTotal, Bytes, BytesTotal int64
		Errors                               []any
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, r.stdout)
	}
	num := func(k string) int64 {
		f, ok := m[k].(float64)
		if !ok {
			t.Errorf("restore --json has no number %q: %s", k, r.stdout)
		}
		return int64(f)
	}
	v.Files, v.FilesTotal, v.Bytes, v.BytesTotal = num("files"), num("files_total"), num("bytes"), num("bytes_total")
	var written int64
	filepath.Walk(filepath.Join(e.dir, "r"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			written += fi.Size()
		}
		return nil
	})
	if v.FilesTotal != 7 || v.Files >= 7 || v.Bytes != written || v.BytesTotal != 6*6<<20+5 {
		t.Errorf("restore --json counts %+v; %d bytes are in the target", v, written)
	}
	r = e.run("restore", "latest", "--target", filepath.Join(e.dir, "r2"))
	if r.code != 3 || !strings.Contains(r.stdout, "in part") || !strings.Contains(r.stdout, fmt.Sprintf("%d of 7 files", v.Files)) {
		t.Errorf("restore summary with a pack missing: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
