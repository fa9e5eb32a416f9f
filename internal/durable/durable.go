// Package durable makes what was written below a directory durable, so
// that a command that wrote many files (a restore) reports success only
// once a crash or power cut can no longer take them away: on Linux with
// one syncfs(2) per file system, which writes out file data, inodes and
// directory entries alike; where that is refused, by fsyncing every file
// and directory.
package durable

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Sync makes everything below each of dirs durable: the files' data and
// metadata and the directories' entries, dirs' own entries in their
// parents, and the parents a restore may have made on the way to them.
// A failure is an error naming the directory: what was written may not
// be on disk.
func Sync(ctx context.Context, dirs ...string) error {
	return syncDirs(ctx, dirs)
}

// syncEach fsyncs every file and directory below dir (dir included, not
// following symlinks, crossing into file systems mounted below it), and
// dir's parents: the way without syncfs.
func syncEach(ctx context.Context, dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			// A symlink, FIFO or device is made durable with the
			// directory that holds it.
			return nil
		}
		return fsync(p)
	})
	if err != nil {
		return fmt.Errorf("syncing %s to disk: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// The parents, for the entries a restore made on the way to dir. One
	// this process cannot read (mode 0711, not its own) cannot be opened
	// to be synced: it is left to the kernel, the one gap of this way.
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		if err := fsync(p); err != nil && !errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("syncing %s to disk: %w", dir, err)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// fsync opens p (a regular file or directory) and fsyncs it. A file that
// cannot be opened for reading (restored write-only) is opened for
// writing.
func fsync(p string) error {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrPermission) {
		f, err = os.OpenFile(p, os.O_WRONLY, 0)
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}
