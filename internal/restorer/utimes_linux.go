package restorer

import (
	"golang.org/x/sys/unix"
	"syscall"
)

// lutimes sets times without following a symlink.
func lutimes(p string, ts []syscall.Timespec) error {
	uts := []unix.Timespec{unix.Timespec(ts[0]), unix.Timespec(ts[1])}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, uts, unix.AT_SYMLINK_NOFOLLOW)
}
