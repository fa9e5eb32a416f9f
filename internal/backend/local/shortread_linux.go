package local

import "golang.org/x/sys/unix"

// shortReadIsEOF reports whether the file system of the open directory
// dirfd is one whose read of a regular file returns fewer bytes than
// asked only at the file's end (a local disk or memory file system,
// reading through the page cache). Network and FUSE file systems may
// return a short read before the end, and so does any unknown one.
func shortReadIsEOF(dirfd int) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(dirfd, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC, unix.F2FS_SUPER_MAGIC:
		return true
	}
	return false
}
