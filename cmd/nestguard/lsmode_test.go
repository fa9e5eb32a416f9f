package main

import (
	"io/fs"
	"testing"

	"github.com/nestguard/nestguard/internal/tree"
)

// TestLsMode: ls --json's mode is what ls -l shows (docs/json.md).
func TestLsMode(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		mode fs.FileMode
		want string
	}{
		{tree.File, 0o644, "-rw-r--r--"},
		{tree.File, 0o755 | fs.ModeSetuid, "-rwsr-xr-x"},
		{tree.File, 0o644 | fs.ModeSetuid, "-rwSr--r--"},
		{tree.File, 0o710 | fs.ModeSetgid, "-rwx--s---"},
		{tree.File, 0o700 | fs.ModeSetgid, "-rwx--S---"},
		{tree.Dir, 0o777 | fs.ModeSticky, "drwxrwxrwt"},
		{tree.Dir, 0o770 | fs.ModeSticky, "drwxrwx--T"},
		{tree.Symlink, 0o777, "lrwxrwxrwx"},
		{tree.Dev, 0o660, "brw-rw----"},
		{tree.CharDev, 0o666, "crw-rw-rw-"},
		{tree.FIFO, 0o600, "prw-------"},
		{tree.Socket, 0o755, "srwxr-xr-x"},
	} {
		if got := lsMode(&tree.Node{Type: tc.typ, Mode: tc.mode}); got != tc.want {
			t.Errorf("%s %v: %q, want %q", tc.typ, tc.mode, got, tc.want)
		}
	}
}
