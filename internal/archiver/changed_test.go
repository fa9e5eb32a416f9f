package archiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/chunker"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/tree"
)

var testParams = chunker.Params{Min: 64 << 10, Avg: 128 << 10, Max: 512 << 10}

// syncLog is a log that tests read while the backup writes it.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *syncLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// content reads back the stored content of a file node.
func content(t *testing.T, repo *repository.Repository, n *tree.Node) []byte {
	t.Helper()
	var b []byte
	for _, bid := range n.Content {
		d, err := repo.LoadBlob(context.Background(), bid, nil)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, d...)
	}
	return b
}

func setXattr(t *testing.T, p, v string) {
	t.Helper()
	if err := unix.Setxattr(p, "user.tag", []byte(v), 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			t.Skipf("no user extended attributes on %s", p)
		}
		t.Fatal(err)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestReplacedBeforeRead: a file renamed over the path after the walk
// listed it (its lstat and its extended attributes read by path) and
// before it is opened is saved with the metadata and attributes of the
// file read, never the listed one's with the new content (F4: the old
// mode 0644 and user.tag=AAAA were stored with the new content). The
// rename is tried before the walk reads the attributes (from Exclude,
// right after the lstat) and after it (before the open), for a small file
// (read through its descriptor alone) and a large one.
func TestReplacedBeforeRead(t *testing.T) {
	for _, size := range []int{100, 3 * testParams.Min} {
		for _, when := range []string{"before the attributes", "before the open"} {
			t.Run(fmt.Sprintf("%d bytes, %s", size, when), func(t *testing.T) {
				testReplacedBeforeRead(t, size, when == "before the open")
			})
		}
	}
}

func testReplacedBeforeRead(t *testing.T, size int, atOpen bool) {
	repo := repotest.New(t)
	src, other := t.TempDir(), t.TempDir()
	target, repl := filepath.Join(src, "b_target"), filepath.Join(other, "new")
	old, cur := randomBytes(size, 1), randomBytes(size, 2)
	if err := os.WriteFile(target, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(repl, cur, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(target, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	setXattr(t, target, "AAAA")
	setXattr(t, repl, "BBBB")
	replInode := inode(t, repl)
	var once sync.Once
	replace := func() {
		once.Do(func() {
			if err := os.Rename(repl, target); err != nil {
				t.Error(err)
			}
		})
	}
	var log syncLog
	opt := Options{Chunker: testParams, Log: log.logger()}
	if !atOpen {
		opt.Exclude = func(rel string, _ fs.FileInfo) bool {
			if rel == "b_target" {
				replace()
			}
			return false
		}
	}
	a := New(repo, opt)
	a.directMin = 1 // a large file is read past the page cache (direct.go), as F4's were
	if atOpen {
		a.beforeOpen = func(string) { replace() }
	}
	tr := snapshotTree(t, repo, a, src)
	n := tr.Find("b_target")
	if n == nil {
		t.Fatal("b_target not in the snapshot")
	}
	if n.Mode.Perm() != 0o600 || n.Inode != replInode || n.Size != uint64(size) {
		t.Errorf("node mode %v inode %d size %d, want the file read's: 0600, %d, %d", n.Mode, n.Inode, n.Size, replInode, size)
	}
	if len(n.Xattrs) != 1 || string(n.Xattrs[0].Name) != "user.tag" || string(n.Xattrs[0].Value) != "BBBB" {
		t.Errorf("node xattrs %q, want the file read's user.tag=BBBB", n.Xattrs)
	}
	if !bytes.Equal(content(t, repo, n), cur) {
		t.Error("stored content is not the file read's")
	}
	if len(a.Errors()) != 0 || len(a.Changed()) != 0 || a.C.ChangedWhileRead.Load() != 0 {
		t.Errorf("a consistent copy of the replacing file reported: errors %v, changed %v", a.Errors(), a.Changed())
	}
	if atOpen && !strings.Contains(log.String(), "file replaced since it was listed") {
		t.Errorf("replacement not logged:\n%s", log.String())
	}
}

// TestChangedWhileRead: a file written in place (F5) or grown while it is
// read is saved, warned about by name and counted (Changed, the summary);
// an unchanged file beside it is not. The node keeps the status from
// before the read, so the next backup reads the file again. With
// ExpectWrites (a base backup) nothing is counted.
func TestChangedWhileRead(t *testing.T) {
	inPlace := func(t *testing.T, p string) {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, off := range []int64{0, 2 * int64(testParams.Min)} {
			if _, err := f.WriteAt([]byte("rewritten"), off); err != nil {
				t.Error(err)
			}
		}
	}
	grow := func(t *testing.T, p string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(randomBytes(100<<10, 9)); err != nil {
			t.Error(err)
		}
	}
	for _, c := range []struct {
		name                 string
		size                 int
		change               func(*testing.T, string)
		direct, expectWrites bool
	}{
		{"in place", 3 * testParams.Min, inPlace, false, false},
		{"in place, read direct", 3 * testParams.Min, inPlace, true, false},
		{"grown", 3 * testParams.Min, grow, false, false},
		{"small, in place", 100, func(t *testing.T, p string) {
			if err := os.WriteFile(p, bytes.Repeat([]byte{'z'}, 100), 0o644); err != nil {
				t.Error(err)
			}
		}, false, false},
		{"expected writes, in place", 3 * testParams.Min, inPlace, true, true},
		{"expected writes, grown", 3 * testParams.Min, grow, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			testChangedWhileRead(t, c.size, c.change, c.direct, c.expectWrites)
		})
	}
}

func testChangedWhileRead(t *testing.T, size int, change func(*testing.T, string), direct, expectWrites bool) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	long := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, name := range []string{"changes", "steady"} {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, randomBytes(size, 3), 0o644); err != nil {
			t.Fatal(err)
		}
		// An mtime long past: the write while it is read changes it,
		// whatever the file system's timestamp tick.
		if err := os.Chtimes(p, long, long); err != nil {
			t.Fatal(err)
		}
	}
	changes := filepath.Join(src, "changes")
	var once sync.Once
	var log syncLog
	opt := Options{Chunker: testParams, Log: log.logger(), ExpectWrites: expectWrites}
	// OnChunk sees each chunk as it is read, before the status is taken
	// again (a small file: its one chunk, read whole).
	opt.OnChunk = func(rel string, _ int64, _ []byte) {
		if rel == "changes" {
			once.Do(func() { change(t, changes) })
		}
	}
	if expectWrites {
		// As pg backup reads a relation file: fixed blocks.
		opt.Splitter = func(_ string, rd io.Reader) chunker.Splitter { return chunker.NewFixed(rd, 32<<10) }
	}
	a := New(repo, opt)
	if direct {
		a.directMin = 1 // read past the page cache (direct.go), as a large file is
	}
	root, err := a.SnapshotDir(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := tree.Load(ctx, repo, root)
	if err != nil {
		t.Fatal(err)
	}
	n := tr.Find("changes")
	if got := uint64(len(content(t, repo, n))); got != n.Size {
		t.Errorf("content of %d bytes, size %d: it would not restore", got, n.Size)
	}
	sum := a.Summary(time.Now())
	if expectWrites {
		if len(a.Changed()) != 0 || sum.ChangedWhileRead != 0 || strings.Contains(log.String(), "changed while it was read") {
			t.Fatalf("writes expected, yet counted: %v, summary %d\n%s", a.Changed(), sum.ChangedWhileRead, log.String())
		}
		return
	}
	ch := a.Changed()
	if len(ch) != 1 || ch[0].Path != changes || sum.ChangedWhileRead != 1 || a.C.Errors.Load() != 0 {
		t.Fatalf("changed %v, summary %d, errors %d: want %s alone", ch, sum.ChangedWhileRead, a.C.Errors.Load(), changes)
	}
	if l := log.String(); !strings.Contains(l, "changed while it was read") || !strings.Contains(l, changes) ||
		strings.Contains(l, filepath.Join(src, "steady")) {
		t.Errorf("log does not warn of %s alone:\n%s", changes, l)
	}
	if !n.ModTime.Equal(long) {
		t.Errorf("node mtime %v, want the one before the read (%v)", n.ModTime, long)
	}

	// The next backup reads the file again: its stored status is from
	// before the write.
	b := New(repo, Options{Chunker: testParams, Parent: &root})
	if _, err := b.SnapshotDir(ctx, src); err != nil {
		t.Fatal(err)
	}
	if b.C.FilesChanged.Load() != 1 || b.C.FilesUnmodified.Load() != 1 || len(b.Changed()) != 0 {
		t.Errorf("next backup: %d changed, %d unmodified, %v changed while read; want 1, 1, none",
			b.C.FilesChanged.Load(), b.C.FilesUnmodified.Load(), b.Changed())
	}
}

// TestOpenedReportsAttributeErrorsOnce: the errors reading a regular
// file's attributes by path (the walk's) are reported when the file is
// opened unchanged, and dropped when its node is made again from the
// open descriptor, whose attributes (read without error here) are the
// ones stored: they were reported twice before, or for attributes the
// snapshot holds after all.
func TestOpenedReportsAttributeErrorsOnce(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	setXattr(t, p, "AAAA")
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	walkErr := errors.New("listing extended attributes: injected")
	for _, changed := range []bool{false, true} {
		t.Run(fmt.Sprintf("changed=%v", changed), func(t *testing.T) {
			a := New(repotest.New(t), Options{Chunker: testParams})
			n, xerrs, err := a.listedNode(nil, p, fi)
			if err != nil || len(xerrs) != 0 {
				t.Fatalf("listedNode: %v %v", err, xerrs)
			}
			n.Xattrs = nil // as if the walk's read had failed
			j := &fileJob{abs: p, f: future{node: n}, xattrErrs: []error{walkErr}}
			if changed {
				n.Inode++ // another file than the one listed
			}
			fd, err := openRaw(context.Background(), j)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			st, err := fstat(fd, p)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.opened(j, fd, &st); err != nil {
				t.Fatal(err)
			}
			errs := a.Errors()
			if changed {
				if len(errs) != 0 || len(n.Xattrs) != 1 || string(n.Xattrs[0].Value) != "AAAA" {
					t.Fatalf("node made again from the descriptor: errors %v, attributes %v", errs, n.Xattrs)
				}
				return
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Err, "injected") {
				t.Fatalf("unchanged file: errors %v, want the walk's once", errs)
			}
		})
	}
}
