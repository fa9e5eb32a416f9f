package durable

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncDirs syncs the file system of each of dirs once (syncfs(2): every
// dirty page and inode of the file system, the directories' entries
// among them), falling back to fsyncing each file and directory where
// the kernel lacks syncfs or a seccomp filter refuses it.
//
// Before Linux 5.8, syncfs did not report an error in writing back the
// data (it returned 0 regardless); since 5.8 it reports one that
// happened since the file system's last syncfs.
func syncDirs(ctx context.Context, dirs []string) error {
	done := map[uint64]bool{} // file systems synced, by device
	for _, dir := range dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("syncing %s to disk: %w", dir, &os.PathError{Op: "open", Path: dir, Err: err})
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fmt.Errorf("syncing %s to disk: %w", dir, &os.PathError{Op: "fstat", Path: dir, Err: err})
		}
		if done[st.Dev] {
			unix.Close(fd)
			continue
		}
		err = unix.Syncfs(fd)
		unix.Close(fd)
		switch {
		case err == nil:
			done[st.Dev] = true
		case syncfsRefused(err):
			if err := syncEach(ctx, dir); err != nil {
				return err
			}
		default:
			return syncfsError(dir, err)
		}
	}
	return nil
}

// syncfsRefused reports whether syncfs(2) failed because it cannot be
// called here (a kernel without it, a seccomp filter refusing it), not
// because writing back failed.
func syncfsRefused(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM)
}

func syncfsError(dir string, err error) error {
	return fmt.Errorf("syncing the file system of %s to disk (syncfs): %w", dir, err)
}

// Flush writes back dir's whole file system and waits for it (syncfs(2)),
// between the writes of a long job, so that its Sync at the end finds
// little left: a hint, nil where dir cannot be opened or syncfs cannot
// be called (Sync then finds its own way). Its error is one writing back
// met, which syncfs reports once, to this call, and not to a later Sync:
// the caller must fail with it.
func Flush(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil && !syncfsRefused(err) {
		return syncfsError(dir, err)
	}
	return nil
}
