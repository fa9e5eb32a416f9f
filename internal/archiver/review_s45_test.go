package archiver

import (
	"context"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/tree"
)

// TestDirectReopenFIFOSwapped (review): the direct reader opens the file
// a second time by its path (directio.OpenSame), blocking, following
// symbolic links: a FIFO (or a link to one, or to a device) put in the
// file's place after openRaw opened it stalls the backup until a writer
// comes, the stall openRaw's O_NONBLOCK|O_NOFOLLOW was added to prevent
// (swap_test.go). A link to a device opens the device as root (its open
// runs before O_DIRECT is refused). Reopening the descriptor itself
// (/proc/self/fd/N) names the same file whatever the path holds.
func TestDirectReopenFIFOSwapped(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	var pool hugemem.Pool
	defer pool.Release()
	done := make(chan *directReader, 1)
	go func() { done <- newDirectReader(f, p, 1<<20, 1, &pool) }()
	select {
	case dr := <-done:
		if dr != nil {
			dr.Close()
		}
	case <-time.After(3 * time.Second):
		// Unblock the opens (Open tries twice; a writer arrives for each)
		// so the test ends.
		for {
			if w, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				unix.Close(w)
			}
			select {
			case dr := <-done:
				if dr != nil {
					dr.Close()
				}
				t.Fatal("newDirectReader blocked opening a FIFO put in the file's place after it was opened")
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// TestSwapDirForSymlinkXattrs (review45): a listed subdirectory replaced
// by a symbolic link before its node is made: its extended attributes
// (ACLs included) are read by path *following* the link (listedNode:
// follow for every directory), so the snapshot stores, on d/sub, the
// attributes of whatever the link points to (another user's directory,
// root's), though the walk itself refuses to follow it.
func TestSwapDirForSymlinkXattrs(t *testing.T) {
	e := newSwapEnv(t, 100)
	if err := unix.Setxattr(filepath.Join(e.secret, "sub"), "user.secret", []byte("s3cret"), 0); err != nil {
		t.Skipf("no user attributes here: %v", err)
	}
	repo := repotest.New(t)
	var o sync.Once
	a := New(repo, Options{Chunker: testParams, Exclude: func(rel string, _ fs.FileInfo) bool {
		if rel == "d/sub" {
			o.Do(func() {
				if err := os.Rename(filepath.Join(e.d, "sub"), filepath.Join(e.src, "sub.away")); err != nil {
					t.Error(err)
				}
				if err := os.Symlink(filepath.Join(e.secret, "sub"), filepath.Join(e.d, "sub")); err != nil {
					t.Error(err)
				}
			})
		}
		return false
	}})
	tr := snapshotTree(t, repo, a, e.src)
	if sub := subtree(t, repo, tr, "d").Find("sub"); sub != nil {
		for _, x := range sub.Xattrs {
			if string(x.Name) == "user.secret" {
				t.Fatalf("d/sub saved with the attribute %q=%q of the directory a link swapped in points to", x.Name, x.Value)
			}
		}
	}
}

// TestBackupDotThroughSymlinkedPWD (review45): "backup ." names the
// current directory. filepath.Abs takes it from $PWD (os.Getwd), which
// is the logical path a shell keeps: through a symbolic link when the
// user cd'd through one (cd /srv/data, data -> /mnt/disk/data). That
// path, not given with a trailing slash, is then saved as the link
// alone: the directory's files are nowhere in the snapshot, with no
// error (exit 0).
func TestBackupDotThroughSymlinkedPWD(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	real, link := filepath.Join(base, "real"), filepath.Join(base, "link")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	t.Chdir(real)
	t.Setenv("PWD", link)
	if wd, _ := os.Getwd(); wd != link {
		t.Skipf("Getwd does not take $PWD here: %s", wd)
	}
	repo := repotest.New(t)
	sn, ferrs, err := Backup(ctx, repo, []string{"."}, BackupOptions{})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	tr, err := tree.Load(ctx, repo, sn.Tree)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimPrefix(link, "/"), "/")
	for _, name := range parts[:len(parts)-1] {
		tr = subtree(t, repo, tr, name)
	}
	n := tr.Find("link")
	if n == nil || n.Type != tree.Dir {
		t.Fatalf("backup . in %s (a link to %s): saved %+v, not the directory", link, real, n)
	}
}

// TestLeasedFileBacksUp (review45): openRaw's O_NONBLOCK makes open(2)
// fail with EWOULDBLOCK, instead of breaking the lease and waiting, on a
// file another process holds a write lease on (Samba's kernel oplocks,
// knfsd's write delegations, any F_SETLEASE user): the file is not backed
// up. Before, the open broke the lease and waited for its release.
func TestLeasedFileBacksUp(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "leased")
	if err := os.WriteFile(p, []byte("leased data"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGIO)
	defer signal.Stop(sig)
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		t.Skipf("no lease: %v", err)
	}
	fd := f.Fd()
	released := make(chan struct{})
	go func() {
		defer close(released)
		select {
		case <-sig: // the lease is being broken: give it up, as its holder does
			unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_UNLCK)
		case <-time.After(5 * time.Second):
		}
	}()
	defer func() { <-released }()
	repo := repotest.New(t)
	a := New(repo, Options{Chunker: testParams})
	snapshotTree(t, repo, a, src)
	if errs := a.Errors(); len(errs) > 0 {
		t.Fatalf("a leased file is not backed up: %v", errs)
	}
}

// TestBackupMtimePastYear9999 (review45): d150342 restores mtimes outside
// 1678-2262; a file system stores seconds up to 2^63 (ext4 to 2446, xfs
// bigtime 2486, btrfs/tmpfs far beyond), and anyone may set them. A tree
// node's times are RFC 3339 text (encodefast: AppendText), which has no
// year past 9999: such a file must not cost the backup more than itself.
func TestBackupMtimePastYear9999(t *testing.T) {
	src := t.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "review45"); err == nil { // tmpfs keeps 64-bit seconds
		t.Cleanup(func() { os.RemoveAll(shm) })
		src = shm
	}
	if err := os.WriteFile(filepath.Join(src, "ok"), []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(src, "future")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{{Sec: 253402300800 + 86400}, {Sec: 253402300800 + 86400}} // year 10000
	if err := unix.UtimesNano(p, ts); err != nil {
		t.Skip(err)
	}
	var st unix.Stat_t
	if unix.Stat(p, &st) != nil || st.Mtim.Sec != ts[1].Sec {
		t.Skip("the file system clamps the time")
	}
	repo := repotest.New(t)
	a := New(repo, Options{Chunker: testParams})
	_, err := a.SnapshotDir(context.Background(), src)
	if err != nil {
		t.Fatalf("one file dated 10000 fails the whole backup: %v", err)
	}
}

// TestSwapParentXattrs (review45): a directory being walked is renamed
// away and a symbolic link to a secret directory put in its place after
// it was opened: its file is stated, opened and read through the open
// directory (right), but its extended attributes are read by its full
// path, through the link: the secret file's attributes are stored with
// the right file's content (opened keeps them: the file did not change).
func TestSwapParentXattrs(t *testing.T) {
	e := newSwapEnv(t, 100)
	if err := unix.Setxattr(filepath.Join(e.secret, "sub", "g"), "user.secret", []byte("s3cret"), 0); err != nil {
		t.Skipf("no user attributes here: %v", err)
	}
	repo := repotest.New(t)
	var o sync.Once
	a := New(repo, Options{Chunker: testParams, Exclude: func(rel string, _ fs.FileInfo) bool {
		if rel == "d/sub/g" {
			o.Do(func() {
				if err := os.Rename(filepath.Join(e.d, "sub"), filepath.Join(e.src, "sub.away")); err != nil {
					t.Error(err)
				}
				if err := os.Symlink(filepath.Join(e.secret, "sub"), filepath.Join(e.d, "sub")); err != nil {
					t.Error(err)
				}
			})
		}
		return false
	}})
	tr := snapshotTree(t, repo, a, e.src)
	g := subtree(t, repo, subtree(t, repo, tr, "d"), "sub").Find("g")
	if g == nil {
		t.Fatal("d/sub/g not saved")
	}
	for _, x := range g.Xattrs {
		if string(x.Name) == "user.secret" {
			t.Fatalf("d/sub/g saved with the attribute %q=%q of the secret file a link put on its path", x.Name, x.Value)
		}
	}
}
