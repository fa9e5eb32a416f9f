package archiver

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/tree"
)

// TestBackupDeeperThanPathMax: a tree whose paths grow past PATH_MAX
// (each name within NAME_MAX, as Linux allows) is saved whole, its
// deepest file's content, symbolic link and extended attribute included:
// the walk opens entries relative to their directory. (Found by a hostile
// test: everything below about 4 KiB of path was left out, reported.)
func TestBackupDeeperThanPathMax(t *testing.T) {
	src := t.TempDir()
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 24 { // 24 * 201 bytes: past 4096
		name := fmt.Sprintf("%s%02d", strings.Repeat("d", 199), i)
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
	defer unix.Close(fd)
	ffd, err := unix.Openat(fd, "leaf", unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(ffd, []byte("deep data"))
	xattrs := unix.Fsetxattr(ffd, "user.deep", []byte("v"), 0) == nil
	unix.Close(ffd)
	if err := unix.Symlinkat("leaf", fd, "link"); err != nil {
		t.Fatal(err)
	}

	repo := repotest.New(t)
	a := New(repo, Options{Chunker: testParams})
	tr := snapshotTree(t, repo, a, src)
	if errs := a.Errors(); len(errs) > 0 {
		t.Fatalf("backup of a deep tree: %d errors, the first %v", len(errs), errs[0])
	}
	for _, name := range names {
		tr = subtree(t, repo, tr, name)
	}
	leaf, link := tr.Find("leaf"), tr.Find("link")
	if leaf == nil || !bytes.Equal(content(t, repo, leaf), []byte("deep data")) {
		t.Fatalf("the deepest file: %+v", leaf)
	}
	if xattrs && (len(leaf.Xattrs) != 1 || string(leaf.Xattrs[0].Name) != "user.deep") {
		t.Errorf("the deepest file's attributes: %q", leaf.Xattrs)
	}
	if link == nil || link.Type != tree.Symlink || link.LinkTarget != "leaf" {
		t.Errorf("the deepest link: %+v", link)
	}
}
