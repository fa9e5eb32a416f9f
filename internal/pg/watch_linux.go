//go:build linux

package pg

import (
	"os"

	"golang.org/x/sys/unix"
)

// dirWatch wakes a waiter when an entry is created, moved or removed in
// one of the directories it watches (inotify), so that the background
// worker sees a file PostgreSQL queued, and a call its acknowledgement,
// at once rather than at the next look. A nil *dirWatch (inotify
// unavailable) never wakes: its users keep polling as well.
type dirWatch struct {
	f    *os.File
	wake chan struct{}
}

// watchDirs watches dirs, or returns nil when it cannot.
func watchDirs(dirs ...string) *dirWatch {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	for _, d := range dirs {
		if _, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_ONLYDIR); err != nil {
			unix.Close(fd)
			return nil
		}
	}
	w := &dirWatch{f: os.NewFile(uintptr(fd), "inotify"), wake: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := w.f.Read(buf); err != nil {
				return // closed
			}
			select {
			case w.wake <- struct{}{}:
			default: // a wake-up is pending already
			}
		}
	}()
	return w
}

// C is ready after a change since the last receive; nil (never ready)
// for a nil watch.
func (w *dirWatch) C() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.wake
}

// Close stops watching.
func (w *dirWatch) Close() {
	if w != nil {
		w.f.Close()
	}
}
