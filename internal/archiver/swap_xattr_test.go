package archiver

// Tests of hostile round s45b: each fails before its mend.

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// TestSwapParentXattrsNotOthers: the directory of a listed file renamed
// away and a symbolic link to another directory put in its place after
// the listing (as TestSwapParentForSymlink) must not give the file saved
// the extended attributes of the other directory's file of the same name.
// The walk reads content relative to the directory listed, but reads the
// attributes by path (listedNode: readXattrs of abs), which follows the
// symlink: the snapshot then held the listed file's content with the
// other file's attributes (security.capability, ACLs), and a restore as
// root gave an attacker's program another program's capabilities.
func TestSwapParentXattrsNotOthers(t *testing.T) {
	e := newSwapEnv(t, 100)
	if err := unix.Setxattr(filepath.Join(e.secret, "f"), "user.secret", []byte("other file's"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	if err := unix.Setxattr(filepath.Join(e.secret, "sub"), "user.secretdir", []byte("other dir's"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	repo := repotest.New(t)
	var o sync.Once
	a := New(repo, Options{Chunker: testParams, Exclude: func(rel string, _ fs.FileInfo) bool {
		if rel == "d/f" {
			o.Do(func() {
				if err := os.Rename(e.d, e.d+".away"); err != nil {
					t.Error(err)
				}
				if err := os.Symlink(e.secret, e.d); err != nil {
					t.Error(err)
				}
			})
		}
		return false
	}})
	tr := snapshotTree(t, repo, a, e.src)
	d := subtree(t, repo, tr, "d")
	for _, name := range []string{"f", "sub"} {
		n := d.Find(name)
		if n == nil {
			continue
		}
		for _, x := range n.Xattrs {
			t.Errorf("d/%s (type %v) saved with the extended attribute %s=%q of the other directory's entry, which it never had", name, n.Type, x.Name, x.Value)
		}
	}
}
