package secretfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestReadWarnsWhenOthersMayRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pass")
	for _, tc := range []struct {
		mode os.FileMode
		who  string
	}{{0o600, ""}, {0o400, ""}, {0o640, "its group"}, {0o604, "others"}, {0o644, "group and others"}, {0o620, "its group"}} {
		os.WriteFile(p, []byte("secret\n"), 0o600)
		os.Chmod(p, tc.mode)
		var warnings []string
		b, err := Read(p, "passphrase file", func(s string) { warnings = append(warnings, s) })
		if err != nil || string(b) != "secret\n" {
			t.Fatalf("mode %04o: %q, %v", tc.mode, b, err)
		}
		if tc.who == "" {
			if len(warnings) > 0 {
				t.Errorf("mode %04o: warned %q", tc.mode, warnings)
			}
			continue
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0], fmt.Sprintf("may be read by %s (mode %04o)", tc.who, tc.mode)) ||
			!strings.Contains(warnings[0], "chmod go= "+p) {
			t.Errorf("mode %04o: warnings %q", tc.mode, warnings)
		}
	}
	// A pipe is private to the processes that share it.
	r, w, _ := os.Pipe()
	w.Write([]byte("secret\n"))
	w.Close()
	fd := "/proc/self/fd/" + strconv.Itoa(int(r.Fd()))
	if _, err := Read(fd, "passphrase file", func(s string) { t.Errorf("warned about a pipe: %s", s) }); err != nil {
		t.Fatal(err)
	}
}

func TestCreateRefusesOpenDirectories(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o1777, 0o775, 0o757} {
		dir := filepath.Join(t.TempDir(), "d")
		os.Mkdir(dir, 0o700)
		os.Chmod(dir, mode)
		p := filepath.Join(dir, "k")
		if f, err := Create(p); err == nil {
			f.Close()
			t.Errorf("created a secret file in a directory of mode %v", mode)
		} else if !strings.Contains(err.Error(), "chmod go-w "+dir) {
			t.Errorf("mode %v: %v", mode, err)
		}
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("mode %v: file exists", mode)
		}
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "k")
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if _, err := Create(p); err == nil {
		t.Error("overwrote an existing file")
	}
	l := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "elsewhere"), l)
	if _, err := Create(l); err == nil {
		t.Error("followed a symlink")
	}
	if _, err := os.Lstat(filepath.Join(dir, "elsewhere")); err == nil {
		t.Error("created a symlink's target")
	}
}
