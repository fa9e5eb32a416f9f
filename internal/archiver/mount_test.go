package archiver

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/tree"
)

// A mount is backed up in place of the entry at its path (a symlink, as a
// PostgreSQL tablespace's in pg_tblspc), or added where there is none; its
// entries are named below its path for Exclude; a backup with the previous
// one as parent reuses its unchanged files and trees.
func TestMounts(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src, elsewhere := t.TempDir(), t.TempDir()
	ts, added := filepath.Join(elsewhere, "ts"), filepath.Join(elsewhere, "added")
	for _, d := range []string{filepath.Join(src, "links"), filepath.Join(ts, "d"), added} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	for p, data := range map[string]string{filepath.Join(ts, "f"): "f", filepath.Join(ts, "d", "g"): "g", filepath.Join(added, "h"): "h"} {
		if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(src, "links", "ts")); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	if err := os.Chtimes(ts, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []string
	)
	backup := func(parent *id.ID) (id.ID, *Archiver) {
		t.Helper()
		mu.Lock()
		seen = nil
		mu.Unlock()
		a := New(repo, Options{Parent: parent, Mounts: []Mount{{Path: "links/ts", Dir: ts}, {Path: "links/added", Dir: added}},
			Exclude: func(rel string, _ fs.FileInfo) bool {
				mu.Lock()
				seen = append(seen, rel)
				mu.Unlock()
				return false
			}})
		root, err := a.SnapshotDir(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return root, a
	}
	first, _ := backup(nil)
	slices.Sort(seen)
	if want := []string{"links", "links/added/h", "links/ts/d", "links/ts/d/g", "links/ts/f"}; !slices.Equal(seen, want) {
		t.Errorf("Exclude asked about %q, want %q", seen, want)
	}
	load := func(tid id.ID) *tree.Tree {
		t.Helper()
		tr, err := tree.Load(ctx, repo, tid)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	links := load(*load(first).Find("links").Subtree)
	if len(links.Nodes) != 2 {
		t.Fatalf("links holds %d entries, want the two mounts", len(links.Nodes))
	}
	n := links.Find("ts")
	fi, err := os.Stat(ts)
	if err != nil {
		t.Fatal(err)
	}
	if n == nil || n.Type != tree.Dir || n.Subtree == nil || !n.ModTime.Equal(mtime) || n.Mode != fi.Mode().Perm() ||
		n.UID != uint32(os.Getuid()) || n.Links != 0 {
		t.Fatalf("mount node %+v, want the directory %s (mode %v, mtime %v)", n, ts, fi.Mode().Perm(), mtime)
	}
	if f := load(*n.Subtree).Find("f"); f == nil || f.Type != tree.File || f.Size != 1 {
		t.Errorf("mounted file f: %+v", f)
	}
	if h := links.Find("added"); h == nil || h.Subtree == nil || load(*h.Subtree).Find("h") == nil {
		t.Errorf("mount without an entry in its place: %+v", h)
	}

	second, a := backup(&first)
	if second != first {
		t.Errorf("unchanged re-backup with mounts made root tree %s, want the parent's %s", second.Short(), first.Short())
	}
	if got := a.C.FilesUnmodified.Load(); got != 3 {
		t.Errorf("re-backup: %d files unmodified, want 3 (all in mounts)", got)
	}
}

// A mount that cannot be placed or read fails the backup, naming it.
func TestMountsRefused(t *testing.T) {
	repo := repotest.New(t)
	src, dir := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "skipped"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mounts []Mount
		want   string
	}{
		{[]Mount{{Path: "none/x", Dir: dir}}, "parent directory none is not part of the backup"},
		{[]Mount{{Path: "skipped/x", Dir: dir}}, "parent directory skipped is not part of the backup"},
		{[]Mount{{Path: "x", Dir: filepath.Join(dir, "missing")}}, "x (" + filepath.Join(dir, "missing") + ")"},
		{[]Mount{{Path: "x", Dir: filepath.Join(src, "file")}}, "is not a directory"},
		{[]Mount{{Path: "../x", Dir: dir}}, "clean relative path"},
		{[]Mount{{Path: "/x", Dir: dir}}, "clean relative path"},
		{[]Mount{{Path: "x", Dir: dir}, {Path: "x", Dir: src}}, "given twice"},
	} {
		a := New(repo, Options{Mounts: c.mounts, Exclude: func(rel string, _ fs.FileInfo) bool { return rel == "skipped" }})
		_, err := a.SnapshotDir(context.Background(), src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mounts %+v: %v, want an error saying %q", c.mounts, err, c.want)
		}
	}
	a := New(repo, Options{Mounts: []Mount{{Path: "x", Dir: dir}}})
	if _, err := a.Snapshot(context.Background(), []string{src}); err == nil {
		t.Error("Snapshot accepted mounts, which it does not place")
	}
}

// With RereadSince, a file with content whose mtime in the parent is not
// before it is read again although it looks unchanged; older files, empty
// files and directories are reused as without it.
func TestRereadSince(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	copyStart := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	files := map[string]time.Time{
		"old":                     copyStart.Add(-time.Minute),
		"racy":                    copyStart.Add(-500 * time.Millisecond),
		"written during the copy": copyStart.Add(time.Second),
		"dir/in old dir":          copyStart.Add(-time.Hour),
	}
	if err := os.Mkdir(filepath.Join(src, "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, mtime := range files {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte("contents"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	empty := filepath.Join(src, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(empty, copyStart, copyStart); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(src, "dir"), copyStart.Add(time.Hour), copyStart.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	first, err := New(repo, Options{}).SnapshotDir(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		since               time.Time
		changed, unmodified int64
	}{
		{copyStart.Add(-time.Second), 2, 3}, // racy, written during the copy
		{time.Time{}, 0, 5},
		{time.Time{}.Add(-time.Second), 4, 1}, // before any file: all with content
	} {
		a := New(repo, Options{Parent: &first, RereadSince: c.since})
		if _, err := a.SnapshotDir(ctx, src); err != nil {
			t.Fatal(err)
		}
		if got, unmod := a.C.FilesChanged.Load(), a.C.FilesUnmodified.Load(); got != c.changed || unmod != c.unmodified {
			t.Errorf("RereadSince %v: %d files read again, %d unmodified; want %d and %d", c.since, got, unmod, c.changed, c.unmodified)
		}
	}
}
