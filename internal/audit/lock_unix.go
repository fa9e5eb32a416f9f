//go:build unix

package audit

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive lock of f, released when f is closed.
func lockFile(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX) }

// noFollow makes opening a spool file fail on a symbolic link.
const noFollow = unix.O_NOFOLLOW

// checkPrivate checks that dir (followed if a link) and the opened file
// f in it belong to this user and that no one else may write them: a
// spool another user can write could be given calls this user never
// made, or point the flush's truncation at a file of this user's.
func checkPrivate(dir string, f *os.File) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return fmt.Errorf("%s is not a directory of this user's alone (owner uid %d, mode %#o): make it mode 0700", dir, st.Uid, st.Mode&0o777)
	}
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 || st.Nlink != 1 {
		return fmt.Errorf("%s is not a regular file of this user's alone (owner uid %d, mode %#o, %d links)", f.Name(), st.Uid, st.Mode&0o777, st.Nlink)
	}
	return nil
}
