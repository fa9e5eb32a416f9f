package restorer

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// lutimes sets times without following a symlink.
func lutimes(p string, ts []syscall.Timespec) error {
	uts := []unix.Timespec{unix.Timespec(ts[0]), unix.Timespec(ts[1])}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, uts, unix.AT_SYMLINK_NOFOLLOW)
}

// futimens sets the times of the file open as fd, to the nanosecond:
// utimensat with no path, which is what glibc's futimens calls (x/sys's
// Futimes rounds to microseconds and goes through /proc).
func futimens(fd int, ts []syscall.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
