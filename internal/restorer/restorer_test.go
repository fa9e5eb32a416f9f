package restorer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
	"golang.org/x/sys/unix"
)

// A restore in many small batches (files and blobs) gives the same tree as
// one batch: contents, sparse zero runs, empty files, hard links whose two names fall in
// different batches, and mtimes.
func TestRestoreInBatches(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	mtime := time.Date(2024, 2, 29, 12, 0, 0, 123456789, time.UTC) // to the nanosecond
	want := map[string][]byte{}
	for i := range 60 {
		size := 100 + rng.IntN(4000)
		switch i % 20 {
		case 0:
			size = 3<<20 + rng.IntN(1<<20) // many blobs: crosses batchBlobs
		case 1:
			size = 1 << 20 // zeros: no write, yet the file must exist
		case 2:
			size = 0 // no blob at all
		}
		data := make([]byte, size)
		if i%20 != 1 {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		}
		rel := filepath.Join(fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%02d", i))
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		want[rel] = data
	}
	if err := os.Link(filepath.Join(src, "d0", "f03"), filepath.Join(src, "d2", "zlink")); err != nil {
		t.Fatal(err)
	}
	want[filepath.Join("d2", "zlink")] = want[filepath.Join("d0", "f03")]

	sn := backupTree(t, repo, src)
	dst := t.TempDir()
	r := New(repo, Options{Target: dst})
	r.batchFiles, r.batchBlobs = 7, 20
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if errs := r.Errors(); len(errs) > 0 {
		t.Fatalf("restore errors: %v", errs)
	}
	root := filepath.Join(dst, src)
	for rel, data := range want {
		p := filepath.Join(root, rel)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: restored %d bytes that differ from the %d backed up", rel, len(got), len(data))
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", rel, fi.ModTime(), mtime)
		}
	}
	a, _ := os.Stat(filepath.Join(root, "d0", "f03"))
	b, _ := os.Stat(filepath.Join(root, "d2", "zlink"))
	if !os.SameFile(a, b) {
		t.Error("hard link restored as a copy")
	}
	// 60 files and a second name of one of them.
	if got, done := r.C.Files.Load(), r.C.Restored.Load(); got != 61 || done != 61 {
		t.Errorf("%d files counted, %d restored, want 61", got, done)
	}
}

// An include that names nothing in the snapshot fails before anything is
// written (a file named with a trailing slash, "name/", is no match: that
// names a directory); one that names a path by its exact bytes (not
// UTF-8) restores just that.
func TestRestoreIncludes(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	for _, name := range []string{"Stra\xdfe.txt", "Stra\u00dfe.txt", "other"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sn := backupTree(t, repo, src)
	dst := filepath.Join(t.TempDir(), "target")
	missing := []string{"/etc/apt", src + "/Stra\xdfe.txt/x", src + "/Strasse.txt", src + "/other/"}
	err := New(repo, Options{Target: dst, Include: append([]string{src + "/other", src + "/"}, missing...)}).Restore(ctx, sn.Tree)
	var nm *NoMatchError
	if !errors.As(err, &nm) || !slices.Equal(nm.Includes, missing) {
		t.Fatalf("includes matching nothing: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("the target was created: %v", err)
	}
	r := New(repo, Options{Target: dst, Include: []string{src + "/Stra\xdfe.txt"}})
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dst, src))
	if err != nil || len(entries) != 1 || entries[0].Name() != "Stra\xdfe.txt" || r.C.Files.Load() != 1 {
		t.Fatalf("restored %v (%v)", entries, err)
	}
}

// Reserved names at the top of the target may exist without Overwrite
// and are left alone; anything else there still refuses the restore.
// Writeback, and DropBehind with it, change nothing in what is restored.
func TestRestoreReservedWriteback(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	big := make([]byte, 3*writebackBytes+123) // crosses writebackBytes thrice
	rand.NewChaCha8([32]byte{3, 4}).Read(big)
	if err := os.WriteFile(filepath.Join(src, "big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	sn := backupTree(t, repo, src)
	dst := t.TempDir()
	spooled := filepath.Join(dst, "pg_wal", "spooled")
	if err := os.MkdirAll(filepath.Dir(spooled), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spooled, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := New(repo, Options{Target: dst}).Restore(ctx, sn.Tree); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("a target with something in it: %v", err)
	}
	r := New(repo, Options{Target: dst, Reserved: []string{"pg_wal"}, Writeback: true})
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dst, src, "big")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("restored with writeback: %d bytes, %v", len(got), err)
	}
	if got, err := os.ReadFile(spooled); err != nil || string(got) != "mine" {
		t.Errorf("reserved entry after the restore: %q %v", got, err)
	}
	drop := t.TempDir()
	dr := New(repo, Options{Target: drop, Writeback: true, DropBehind: true})
	dr.dropBehindAfter = writebackBytes // from the second call on
	if err := dr.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(drop, src, "big")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("restored dropping behind: %d bytes, %v", len(got), err)
	}
	if err := os.WriteFile(filepath.Join(dst, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := New(repo, Options{Target: t.TempDir() + "/x", Reserved: []string{"pg_wal"}}).Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if err := New(repo, Options{Target: dst, Reserved: []string{"pg_wal"}}).Restore(ctx, sn.Tree); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("an unreserved entry in the target: %v", err)
	}
}

// Files written past the page cache (directio.Filler, here every file)
// restore byte for byte: blobs that begin and end anywhere in a page, runs
// of zeros left as holes, a file ending on a page and one ending inside
// one, small and empty files, blobs used again at another offset within a
// page, and compressed blobs.
func TestRestoreFiller(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	rng := rand.NewChaCha8([32]byte{9})
	big := make([]byte, 9<<20+777)
	rng.Read(big[:5<<20])
	rng.Read(big[8<<20:]) // 3 MiB of zeros between
	exact := make([]byte, 300*4096)
	rng.Read(exact)
	// One block three times at offsets that differ within a page (its
	// blobs, stored once, are placed for their first use only), and a
	// compressible file (its blobs decompressed where they are placed).
	x := make([]byte, 3<<19)
	rng.Read(x)
	rep := slices.Concat(x, exact[:333], x, exact[:4096], x, exact[:1])
	text := bytes.Repeat([]byte("a compressible line of text\n"), 150_000)
	files := map[string][]byte{"big": big, "exact": exact, "small": []byte("ten bytes!"), "empty": nil, "rep": rep, "text": text}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sn := backupTree(t, repo, src)
	dst := t.TempDir()
	r := New(repo, Options{Target: dst, Writeback: true, DropBehind: true, Workers: 3})
	r.fillMin = 1
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(dst, src, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s restored past the page cache: %d bytes (%v), want %d, or not the same", name, len(got), err, len(want))
		}
	}
}

// cancelAtRead is a repository whose first pack read cancels the restore.
type cancelAtRead struct {
	*repository.Repository
	cancel context.CancelFunc
}

func (c cancelAtRead) LoadPackBlobsPlaced(ctx context.Context, pid id.ID, blobs []index.Entry, place func(index.Entry) int, fn func(index.Entry, []byte, error) error) error {
	c.cancel()
	return c.Repository.LoadPackBlobsPlaced(ctx, pid, blobs, place, fn)
}

// A restore with --overwrite interrupted as it reads its first pack leaves
// each file of the target as it was or restored whole: none emptied,
// none partly written, at most the few of the range being read removed.
func TestRestoreInterrupted(t *testing.T) {
	repo := repotest.New(t)
	src := t.TempDir()
	const n = 400
	for i := range n {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), []byte(fmt.Sprintf("new contents of %d", i)), 0o644)
	}
	sn, ferrs, err := archiver.Backup(context.Background(), repo, []string{src}, archiver.BackupOptions{})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	dst := t.TempDir()
	dir := filepath.Join(dst, src)
	os.MkdirAll(dir, 0o755)
	for i := range n {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte(fmt.Sprintf("old %d", i)), 0o644)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := New(cancelAtRead{repo, cancel}, Options{Target: dst, Overwrite: true, Workers: 1})
	if err := r.Restore(ctx, sn.Tree); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted restore: %v", err)
	}
	old, restored, gone := 0, 0, 0
	for i := range n {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)))
		switch {
		case errors.Is(err, os.ErrNotExist):
			gone++
		case err != nil:
			t.Fatal(err)
		case string(b) == fmt.Sprintf("old %d", i):
			old++
		case string(b) == fmt.Sprintf("new contents of %d", i):
			restored++
		default:
			t.Errorf("f%03d: %q, neither what was there nor what was backed up", i, b)
		}
	}
	if gone > maxSingles || old < n-maxSingles {
		t.Errorf("%d files kept, %d restored, %d removed: an interrupted restore destroyed more than the range it read", old, restored, gone)
	}
}

// Identical small files share one blob: restoring thousands of them keeps
// few files open at once, within a low limit of open files.
func TestRestoreSharedBlobOpenFiles(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	const n = 3000
	for i := range n {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%04d", i)), []byte("same 12 bytes"), 0o644)
	}
	sn := backupTree(t, repo, src)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	r := New(repo, Options{Target: t.TempDir()})
	err := r.Restore(ctx, sn.Tree)
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	if err != nil || len(r.Errors()) > 0 || r.C.Restored.Load() != n {
		t.Fatalf("restore of %d identical files with 256 open files allowed: %v, %d restored, errors %v", n, err, r.C.Restored.Load(), r.Errors())
	}
}

// A restore ends by syncing its target, once every file is written and
// has its metadata, and fails naming the target when that sync fails;
// NoSync skips it.
func TestRestoreSyncs(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	sn := backupTree(t, repo, src)
	var synced [][]string
	broken := errors.New("EIO, say")
	for _, tc := range []struct {
		name    string
		noSync  bool
		syncErr error
		want    int // syncs
	}{{"sync", false, nil, 1}, {"no sync", true, nil, 0}, {"sync fails", false, broken, 1}} {
		synced = nil
		dst := t.TempDir()
		r := New(repo, Options{Target: dst, NoSync: tc.noSync})
		r.opt.sync = func(_ context.Context, dirs ...string) error {
			// Everything is in place when the sync comes.
			got, err := os.ReadFile(filepath.Join(dst, src, "f"))
			fi, serr := os.Stat(filepath.Join(dst, src, "f"))
			if err != nil || string(got) != "data" || serr != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("%s: synced before the file was restored: %q %v %v", tc.name, got, err, serr)
			}
			synced = append(synced, dirs)
			return tc.syncErr
		}
		err := r.Restore(ctx, sn.Tree)
		if len(synced) != tc.want || (tc.want > 0 && !slices.Equal(synced[0], []string{dst})) {
			t.Errorf("%s: synced %q, want %d sync of %s", tc.name, synced, tc.want, dst)
		}
		var se *SyncError
		switch {
		case tc.syncErr == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.syncErr != nil && (!errors.As(err, &se) || se.Target != dst || !errors.Is(err, broken) || !strings.Contains(err.Error(), dst)):
			t.Errorf("%s: a failed sync gave %v, want a SyncError naming %s", tc.name, err, dst)
		}
	}
}

// A write error a background flush's syncfs reported fails the restore,
// NoSync or not: the final sync (or pg restore's own) would not be told.
func TestRestoreFlushError(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o640)
	sn := backupTree(t, repo, src)
	broken := errors.New("EIO, say")
	for _, noSync := range []bool{false, true} {
		dst := t.TempDir()
		r := New(repo, Options{Target: dst, Writeback: true, NoSync: noSync})
		flushed := 0
		r.opt.syncfs = func(dir string) error {
			flushed++
			if dir != dst {
				t.Errorf("flushed %s, want %s", dir, dst)
			}
			return broken
		}
		r.opt.sync = func(context.Context, ...string) error { return nil }
		err := r.Restore(ctx, sn.Tree)
		var se *SyncError
		if flushed == 0 || !errors.As(err, &se) || !errors.Is(err, broken) || se.Target != dst {
			t.Errorf("NoSync %v: %d flushes, a failed one gave %v, want a SyncError", noSync, flushed, err)
		}
	}
}

// TestRestoreIndexCacheDamaged: the local index cache damaged after the
// repository was opened (every bucket of the file) does not make a
// restore partial: its lookups repair the cache's failed buckets from the
// index objects (repository.FindBlob), and every file comes back whole.
func TestRestoreIndexCacheDamaged(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	repo := repotest.New(t, repotest.Backend(be))
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[string][]byte{}
	for i := range 40 {
		data := make([]byte, 1000+rng.IntN(600_000))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		name := fmt.Sprintf("f%02d", i)
		if err := os.WriteFile(filepath.Join(src, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		want[name] = data
	}
	sn := backupTree(t, repo, src)
	cached := repotest.OpenCached(t, be, t.TempDir())
	path := cached.IndexCache().Path
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 128; i < len(b); i += 64 {
		b[i] ^= 0x10
	}
	if err := os.WriteFile(path, b, 0o600); err != nil { // the same inode: the table reads it
		t.Fatal(err)
	}
	dst := t.TempDir()
	r := New(cached, Options{Target: dst})
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if errs := r.Errors(); len(errs) > 0 {
		t.Fatalf("restore through a damaged index cache: %v", errs)
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dst, src, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: not restored whole: %v", name, err)
		}
	}
}

// TestRestoreFarTimes: modification times outside the years 1678 to 2262
// (where a time in nanoseconds overflows 64 bits) come back as the file
// system stored them, to the nanosecond, for files, directories and
// symbolic links (found by a hostile test: 2400 came back as 1901).
func TestRestoreFarTimes(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	times := map[string]time.Time{
		"future":  time.Date(2400, 1, 1, 0, 0, 0, 987654321, time.UTC),
		"past":    time.Date(1650, 6, 1, 12, 0, 0, 5, time.UTC),
		"d2300":   time.Date(2300, 2, 3, 4, 5, 6, 7, time.UTC),
		"link":    time.Date(2263, 1, 1, 0, 0, 0, 1, time.UTC),
		"d2300/f": time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
	}
	if err := os.Mkdir(filepath.Join(src, "d2300"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"future", "past", "d2300/f"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("future", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"d2300/f", "future", "past", "link", "d2300"} {
		ts := []unix.Timespec{unix.NsecToTimespec(0), {Sec: times[name].Unix(), Nsec: int64(times[name].Nanosecond())}}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, name), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
	stored := map[string]time.Time{} // as this file system keeps them (it may clamp)
	for name := range times {
		fi, err := os.Lstat(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		stored[name] = fi.ModTime()
	}
	sn := backupTree(t, repo, src)
	dst := t.TempDir()
	r := New(repo, Options{Target: dst})
	if err := r.Restore(ctx, sn.Tree); err != nil || len(r.Errors()) > 0 {
		t.Fatalf("restore: %v %v", err, r.Errors())
	}
	for name, want := range stored {
		fi, err := os.Lstat(filepath.Join(dst, src, name))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(want) {
			t.Errorf("%s: restored mtime %v, want %v", name, fi.ModTime().UTC(), want.UTC())
		}
	}
}

// TestRestoreXattrsExact: a restored entry has the snapshot's extended
// attributes, no more: not the ACL a target with a default ACL gives
// every entry made in it, nor, with Overwrite, an existing directory's
// own attributes and ACLs (found by a hostile test: both reported as a
// full restore).
func TestRestoreXattrsExact(t *testing.T) {
	if _, err := exec.LookPath("setfacl"); err != nil {
		t.Skip("setfacl not installed (Debian package acl)")
	}
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "d", "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"d/f", "d/e/g", "tagged"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Setxattr(filepath.Join(src, "tagged"), "user.kept", []byte("v"), 0); err != nil {
		t.Skipf("no user extended attributes here: %v", err)
	}
	sn := backupTree(t, repo, src)
	xattrs := func(p string) []string {
		buf := make([]byte, 4096)
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			t.Fatalf("listing the attributes of %s: %v", p, err)
		}
		var out []string
		for _, x := range strings.Split(string(buf[:n]), "\x00") {
			if x != "" && !strings.HasPrefix(x, "security.") {
				out = append(out, x)
			}
		}
		slices.Sort(out)
		return out
	}
	check := func(dst string) {
		t.Helper()
		for _, name := range []string{"", "d", "d/e", "d/f", "d/e/g", "tagged"} {
			want := []string(nil)
			if name == "tagged" {
				want = []string{"user.kept"}
			}
			if got := xattrs(filepath.Join(dst, src, name)); !slices.Equal(got, want) {
				t.Errorf("%s: attributes %q, want %q", name, got, want)
			}
		}
	}

	// A target with a default ACL.
	dst := t.TempDir()
	if out, err := exec.Command("setfacl", "-d", "-m", "u:4444:rwx,g:4445:rwx", dst).CombinedOutput(); err != nil {
		t.Skipf("setfacl: %v %s", err, out)
	}
	r := New(repo, Options{Target: dst})
	if err := r.Restore(ctx, sn.Tree); err != nil || len(r.Errors()) > 0 {
		t.Fatalf("restore: %v %v", err, r.Errors())
	}
	check(dst)

	// Overwrite, over entries with attributes and ACLs of their own.
	dst = t.TempDir()
	d := filepath.Join(dst, src, "d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(d, "user.stale", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("setfacl", "-m", "u:4444:rwx", "-d", "-m", "u:4444:rwx", d).CombinedOutput(); err != nil {
		t.Fatalf("setfacl: %v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(d, "f"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(d, "f"), "user.stale", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	r = New(repo, Options{Target: dst, Overwrite: true})
	if err := r.Restore(ctx, sn.Tree); err != nil || len(r.Errors()) > 0 {
		t.Fatalf("restore --overwrite: %v %v", err, r.Errors())
	}
	check(dst)
}

// refusing is a metaSetter whose owner, mode and time calls fail, as a
// user namespace's chown of an unmapped owner does.
type refusing struct{}

func (refusing) chown(int, int) error            { return syscall.EINVAL }
func (refusing) chmod(os.FileMode) error         { return syscall.EPERM }
func (refusing) utimes([]syscall.Timespec) error { return syscall.EPERM }
func (refusing) setxattr(string, []byte) error   { return nil }
func (refusing) listxattr([]byte) (int, error)   { return 0, nil }
func (refusing) removexattr(string) error        { return nil }

// TestRestoreMetaFailuresCounted: an owner asked for (Options.Owners, or
// root), a mode or a time the system refuses is counted and named, so the
// restore ends partial, never reported whole (found by a hostile test: a
// restore as root in a user namespace left every owner unset, exit 0).
func TestRestoreMetaFailuresCounted(t *testing.T) {
	r := New(repotest.New(t), Options{Target: t.TempDir(), Owners: true})
	r.applyMeta("/t/f", &tree.Node{Name: "f", Type: tree.File, Mode: 0o640, UID: 54321, GID: 65432}, refusing{})
	errs := r.Errors()
	var got []string
	for _, e := range errs {
		got = append(got, e.Err)
	}
	want := []string{"cannot restore owner 54321:65432", "cannot restore mode", "cannot restore modification time"}
	if len(got) != len(want) || r.C.Errors.Load() != int64(len(want)) {
		t.Fatalf("errors %q (counted %d), want %q", got, r.C.Errors.Load(), want)
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) || errs[i].Path != "/t/f" {
			t.Errorf("error %d: %s %q, want /t/f %q", i, errs[i].Path, got[i], w)
		}
	}
}

// TestRestoreOverwriteInTheWay: with Overwrite, a directory where the
// snapshot has a file is reported as such, not as the create's "file
// exists" (found by a hostile test).
func TestRestoreOverwriteInTheWay(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	sn := backupTree(t, repo, src)
	dst := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dst, src, "f", "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := New(repo, Options{Target: dst, Overwrite: true})
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	errs := r.Errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Err, "a directory is in the way") {
		t.Fatalf("errors %v, want one naming the directory in the way", errs)
	}
}

// TestRestoreDeeperThanPathMax: a tree whose paths grow past PATH_MAX
// (names within NAME_MAX) restores whole: files, a symbolic link, and the
// deepest directory's mode and time, reached one component at a time.
func TestRestoreDeeperThanPathMax(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 22 {
		name := fmt.Sprintf("%s%02d", strings.Repeat("r", 199), i)
		names = append(names, name)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = nfd
	}
	ffd, err := unix.Openat(fd, "leaf", unix.O_CREAT|unix.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(ffd, []byte("deep data"))
	unix.Close(ffd)
	if err := unix.Symlinkat("leaf", fd, "link"); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	if err := unix.Fchmod(fd, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := unix.UtimesNanoAt(fd, ".", []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	sn := backupTree(t, repo, src)
	dst := t.TempDir()
	r := New(repo, Options{Target: dst})
	if err := r.Restore(ctx, sn.Tree); err != nil || len(r.Errors()) > 0 {
		t.Fatalf("restore: %v %v", err, r.Errors())
	}
	fd, err = unix.Open(filepath.Join(dst, src), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
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
	if st.Mode&0o7777 != 0o711 || !time.Unix(st.Mtim.Unix()).Equal(mtime) {
		t.Errorf("the deepest directory: mode %o mtime %v, want 711 %v", st.Mode&0o7777, time.Unix(st.Mtim.Unix()).UTC(), mtime)
	}
	buf := make([]byte, 64)
	lfd, err := unix.Openat(fd, "leaf", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := unix.Read(lfd, buf)
	unix.Close(lfd)
	if string(buf[:n]) != "deep data" {
		t.Errorf("the deepest file: %q", buf[:n])
	}
	if n, err := unix.Readlinkat(fd, "link", buf); err != nil || string(buf[:n]) != "leaf" {
		t.Errorf("the deepest link: %q %v", buf[:n], err)
	}
}

// backupTree backs up src into repo and returns the snapshot; any file
// not backed up fails the test.
func backupTree(t *testing.T, repo *repository.Repository, src string) *snapshot.Snapshot {
	t.Helper()
	sn, ferrs, err := archiver.Backup(context.Background(), repo, []string{src}, archiver.BackupOptions{})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	return sn
}

// unreadableTree is a repository in which one tree cannot be read.
type unreadableTree struct {
	*repository.Repository
	bad id.ID
}

func (u unreadableTree) LoadBlob(ctx context.Context, bid id.ID, dst []byte) ([]byte, error) {
	if bid == u.bad {
		return nil, fmt.Errorf("blob %s: %w", bid.Short(), errors.New("damaged"))
	}
	return u.Repository.LoadBlob(ctx, bid, dst)
}

// A snapshot whose root tree cannot be read restores nothing: that is an
// error, not a partial restore (which exited 3, the code of "the restore
// was made, some files are missing"). A subtree that cannot be read
// still leaves the rest restored, its directory named.
func TestRestoreRootTreeUnreadable(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "f"), []byte("in sub"), 0o644)
	os.WriteFile(filepath.Join(src, "g"), []byte("beside"), 0o644)
	sn := backupTree(t, repo, src)
	r := New(unreadableTree{repo, sn.Tree}, Options{Target: filepath.Join(t.TempDir(), "t")})
	if err := r.Restore(ctx, sn.Tree); err == nil || !strings.Contains(err.Error(), "root tree") || len(r.Errors()) != 0 {
		t.Fatalf("restore of an unreadable root tree: %v, file errors %v", err, r.Errors())
	}
	sub, err := tree.Lookup(ctx, repo, sn.Tree, filepath.ToSlash(filepath.Join(src, "sub")))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "t")
	r = New(unreadableTree{repo, *sub.Subtree}, Options{Target: dst})
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if errs := r.Errors(); len(errs) != 1 || errs[0].Path != filepath.Join(dst, src, "sub") {
		t.Errorf("unreadable subtree: %v", errs)
	}
	if b, err := os.ReadFile(filepath.Join(dst, src, "g")); string(b) != "beside" {
		t.Errorf("sibling of an unreadable subtree: %q %v", b, err)
	}
}

// A socket is not recreated (the program that listens on it makes it),
// and the restore counts it so that it can say so.
func TestRestoreSocketCounted(t *testing.T) {
	repo := repotest.New(t)
	src := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Skip(err)
	}
	defer l.Close()
	sn := backupTree(t, repo, src)
	dst := t.TempDir()
	r := New(repo, Options{Target: dst, Overwrite: true, Include: []string{src + "/sock"}})
	if err := r.Restore(context.Background(), sn.Tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dst, src, "sock")); !os.IsNotExist(err) || r.C.Sockets.Load() != 1 || r.C.Files.Load() != 0 {
		t.Errorf("socket: %v, %d counted as sockets, %d as files", err, r.C.Sockets.Load(), r.C.Files.Load())
	}
}
