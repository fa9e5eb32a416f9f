// Package secretfile reads and creates the files that hold secrets:
// passphrase files and key files. Like ssh with its private keys, it
// points out a secret file that group or others may read, and it never
// creates one where others could replace it.
package secretfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// maxSize bounds what is read: a passphrase or a key file is a line.
const maxSize = 64 << 10

// Read returns the contents of the secret file at path. A regular file
// that group or others may access is still read (refusing would break
// running backups), but warn is called with a message that names the
// file, its mode and the chmod that fixes it. what names the file in
// messages ("passphrase file", "key file").
func Read(path, what string, warn func(string)) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	defer f.Close()
	// The mode of what was opened, not of what the path names now.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if msg := Loose(path, what, fi); msg != "" && warn != nil {
		warn(msg)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", what, path, err)
	}
	if len(b) > maxSize {
		return nil, fmt.Errorf("%s %s is larger than %d KiB: not a passphrase or key file", what, path, maxSize>>10)
	}
	return b, nil
}

// Loose returns the warning for a secret file group or others may access,
// or "" when only its owner may. Only regular files are judged: a pipe
// such as /dev/fd/3 or <(pass show ...) is private to the processes that
// share it.
func Loose(path, what string, fi fs.FileInfo) string {
	mode := fi.Mode()
	if !mode.IsRegular() || mode.Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s may be read by %s (mode %04o): anyone who can read it can open the repository; run 'chmod go= %s'",
		what, path, who(mode.Perm()), mode.Perm(), path)
}

func who(perm fs.FileMode) string {
	switch {
	case perm&0o070 != 0 && perm&0o007 != 0:
		return "group and others"
	case perm&0o070 != 0:
		return "its group"
	}
	return "others"
}

// Create creates a new secret file at path, mode 0600, for writing. It
// refuses a path whose directory group or others may write to, since
// whoever can write there can replace the file (and so the secret a
// backup later reads, or where it goes), and it never overwrites or
// follows an existing file or symlink.
func Create(path string) (*os.File, error) {
	if err := CheckDir(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	return f, nil
}

// CheckDir returns an error unless a secret file may be created at path:
// its directory exists and only its owner may write to it.
func CheckDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("creating %s: %s is not a directory", path, dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return &UnsafeDirError{Dir: dir, Mode: fi.Mode()}
	}
	return nil
}

// UnsafeDirError is the refusal to create a secret file in a directory
// that group or others may write to.
type UnsafeDirError struct {
	Dir  string
	Mode fs.FileMode
}

func (e *UnsafeDirError) Error() string {
	extra := ""
	if e.Mode&fs.ModeSticky != 0 {
		extra = " (the sticky bit does not stop a file being created there first)"
	}
	return fmt.Sprintf("refusing to create a secret file in %s: group or others may write to it (mode %04o)%s; choose a directory only its owner may write to, e.g. /etc/nestguard, or run 'chmod go-w %s'",
		e.Dir, e.Mode.Perm(), extra, e.Dir)
}
