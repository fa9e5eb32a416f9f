package restorer

import (
	"os"
	"path/filepath"
	"testing"
)

// TestBeneathRefusesSymlinks holds both ways of opening below the target,
// openat2 and the component-wise fallback for kernels without it, to
// never following a symlink: not as an ancestor, not as the file itself.
func TestBeneathRefusesSymlinks(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		dir, outside := t.TempDir(), t.TempDir()
		os.Symlink(outside, filepath.Join(dir, "d"))
		os.Symlink(filepath.Join(outside, "f"), filepath.Join(dir, "f"))
		b, err := openBeneath(dir)
		if err != nil {
			t.Fatal(err)
		}
		b.noOpenat2.Store(fallback)
		p := parents{b: b}
		for _, rel := range []string{"d/x", "f"} {
			if fh, err := p.create(rel, false); err == nil {
				fh.Close()
				t.Errorf("fallback %v: created %s through a symlink", fallback, rel)
			}
		}
		if err := b.mkdir("d/sub", true); err == nil {
			t.Errorf("fallback %v: made a directory through a symlink", fallback)
		}
		if err := b.mkdir("d", false); err == nil {
			t.Errorf("fallback %v: took a symlink for a directory", fallback)
		}
		if err := b.mkdir("d", true); err != nil {
			t.Fatalf("fallback %v: replacing a symlink with a directory: %v", fallback, err)
		}
		for _, rel := range []string{"d/x", "f"} {
			fh, err := p.create(rel, true) // the symlink f is replaced
			if err != nil {
				t.Fatalf("fallback %v: %s: %v", fallback, rel, err)
			}
			fh.Close()
		}
		if names, _ := os.ReadDir(outside); len(names) != 0 {
			t.Errorf("fallback %v: wrote outside the target: %v", fallback, names)
		}
		if fi, err := os.Lstat(filepath.Join(dir, "d", "x")); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("fallback %v: d/x not restored: %v", fallback, err)
		}
		if fi, err := os.Lstat(filepath.Join(dir, "f")); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("fallback %v: f not restored: %v", fallback, err)
		}
		p.close()
		b.close()
	}
}
