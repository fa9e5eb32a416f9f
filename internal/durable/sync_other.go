//go:build !linux

package durable

import "context"

// syncDirs fsyncs each file and directory below each of dirs: there is
// no syncfs(2) outside Linux.
func syncDirs(ctx context.Context, dirs []string) error {
	for _, dir := range dirs {
		if err := syncEach(ctx, dir); err != nil {
			return err
		}
	}
	return nil
}

// Flush is a hint that does nothing here: there is no syncfs(2) outside
// Linux (see the Linux Flush).
func Flush(dir string) error { return nil }
