package archiver

import (
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// unix.Stat_t and syscall.Stat_t are the same kernel structure: Fstatat
// fills the one the rest of the archiver reads (fs.FileInfo.Sys).
var _ [unsafe.Sizeof(unix.Stat_t{}) - unsafe.Sizeof(syscall.Stat_t{})]struct{}
var _ [unsafe.Sizeof(syscall.Stat_t{}) - unsafe.Sizeof(unix.Stat_t{})]struct{}

// dirEntry is one entry of a directory listing: its name and lstat
// result, or the error stating it.
type dirEntry struct {
	name string
	fi   fs.FileInfo
	err  error
}

// readDir lists directory abs, sorted by name, and states each entry
// relative to the open directory (fstatat), not by its path: an entry is
// then found as long as it is in that directory, even while the directory
// is renamed or one of its parents is (an atomic swap, a mv and back),
// where an lstat of the path would not find it. os.ReadDir's entries
// state by path: a directory renamed away for a moment lost every entry
// stated meanwhile from the snapshot, as vanished, with nothing said
// (found by a hostile test). An entry whose state fails because it is
// gone from the directory (deleted since the listing) has err
// fs.ErrNotExist.
func readDir(abs string) ([]dirEntry, error) {
	f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	des, err := f.ReadDir(-1)
	out := make([]dirEntry, 0, len(des))
	fd := int(f.Fd())
	for _, de := range des {
		e := dirEntry{name: de.Name()}
		var st syscall.Stat_t
		err := ignoringEINTR(func() error {
			return unix.Fstatat(fd, e.name, (*unix.Stat_t)(unsafe.Pointer(&st)), unix.AT_SYMLINK_NOFOLLOW)
		})
		if err != nil {
			e.err = &fs.PathError{Op: "lstat", Path: abs + "/" + e.name, Err: err}
		} else {
			e.fi = &statInfo{name: e.name, st: st}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
	return out, err
}

// statInfo is the fs.FileInfo of an lstat result, as os.Lstat gives it:
// Sys returns the *syscall.Stat_t.
type statInfo struct {
	name string
	st   syscall.Stat_t
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.st.Size }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Sec, s.st.Mtim.Nsec) }
func (s *statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s *statInfo) Sys() any           { return &s.st }

func (s *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.st.Mode & 0o777)
	switch s.st.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if s.st.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if s.st.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if s.st.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}
