package archiver

import (
	"errors"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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

// dirHandle is an open directory that the walk opens entries relative
// to (openat, with O_NOFOLLOW): what is read is the entry of that
// directory, whatever happens to the paths above it meanwhile. By path,
// a directory renamed away and a symbolic link put in its place (by
// anyone who can write to its parent) made the walk read, under the
// directory's name, the files of wherever the link pointed (found by a
// hostile test: another user's secret, root's when root backs up). It is
// shared by the jobs that still need it (a subdirectory's walk, a file's
// reader), each holding a reference; the last one closes it.
type dirHandle struct {
	f    *os.File
	refs atomic.Int32
	noAt *atomic.Bool // the walk's: the kernel lacks the *xattrat calls
}

// ref takes a reference for a job that outlives the caller's; nil stays
// nil (an entry opened by its path: a path given to the backup).
func (d *dirHandle) ref() *dirHandle {
	if d != nil {
		d.refs.Add(1)
	}
	return d
}

// unref gives a reference back.
func (d *dirHandle) unref() {
	if d != nil && d.refs.Add(-1) == 0 {
		d.f.Close()
	}
}

// fd is the directory's descriptor, for the *at calls.
func (d *dirHandle) fd() int { return int(d.f.Fd()) }

// errNoLongerDir says that a directory the walk listed is something else
// now (a symbolic link, a file): it is not followed.
var errNoLongerDir = errors.New("no longer a directory (replaced since its parent was listed): not followed")

// openDir opens directory name of parent (abs is its path, for errors),
// never following a symbolic link; with no parent, abs itself (a path
// given to the backup, followed as given).
func openDir(parent *dirHandle, name, abs string) (*dirHandle, error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if parent != nil {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := openIn(parent, name, abs, flags)
	if err != nil {
		if parent != nil && (errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR)) {
			err = errNoLongerDir
		}
		return nil, &fs.PathError{Op: "open", Path: abs, Err: err}
	}
	d := &dirHandle{f: os.NewFile(uintptr(fd), abs)}
	d.refs.Store(1)
	return d, nil
}

// openIn opens entry name of dir with flags, or, with dir nil, the path
// abs: the one open of the walk, for directories (openDir) and files
// (openRaw).
func openIn(dir *dirHandle, name, abs string, flags int) (fd int, err error) {
	err = ignoringEINTR(func() (err error) {
		if dir == nil {
			fd, err = unix.Open(abs, flags, 0)
		} else {
			fd, err = unix.Openat(dir.fd(), name, flags, 0)
		}
		return err
	})
	return fd, err
}

// readDir lists directory d (abs is its path), sorted by name, and
// states each entry relative to it (fstatat), not by its path: an entry
// is found as long as it is in that directory, even while the directory
// is renamed or one of its parents is (an atomic swap, a mv and back),
// where an lstat of the path would not. os.ReadDir's entries state by
// path: a directory renamed away for a moment lost every entry stated
// meanwhile from the snapshot, as vanished, with nothing said (found by
// a hostile test). An entry whose state fails because it is gone from
// the directory (deleted since the listing) has err fs.ErrNotExist.
func readDir(d *dirHandle, abs string) ([]dirEntry, error) {
	des, err := d.f.ReadDir(-1)
	out := make([]dirEntry, 0, len(des))
	fd := d.fd()
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

func (s *statInfo) Mode() fs.FileMode { return fileMode(&s.st) }

// fileMode is st's mode as fs.FileMode, as os.Lstat gives it: type,
// permission bits, set-user-ID, set-group-ID and sticky.
func fileMode(st *syscall.Stat_t) fs.FileMode {
	m := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & syscall.S_IFMT {
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
	if st.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if st.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if st.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// The *xattrat system calls (Linux 6.13): extended attributes of an entry
// of an open directory. Linux numbers them alike on every architecture.
const (
	sysGetxattrat  = 464
	sysListxattrat = 465
)

// listxattrAt is llistxattr of entry name of d: listxattrat, or where the
// kernel lacks it the entry through d's descriptor in /proc.
func (d *dirHandle) listxattrAt(name string, buf []byte) (int, error) {
	if !d.noXattrat() {
		p, err := unix.BytePtrFromString(name)
		if err != nil {
			return 0, err
		}
		var bp unsafe.Pointer
		if len(buf) > 0 {
			bp = unsafe.Pointer(&buf[0])
		}
		n, _, e := unix.Syscall6(sysListxattrat, uintptr(d.fd()), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW, uintptr(bp), uintptr(len(buf)), 0)
		if !d.unsupported(e) {
			return int(n), errnoErr(e)
		}
	}
	return unix.Llistxattr(d.procPath(name), buf)
}

// xattrArgs is the kernel's struct xattr_args.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

// getxattrAt is lgetxattr of attribute attr of entry name of d, as
// listxattrAt.
func (d *dirHandle) getxattrAt(name, attr string, buf []byte) (int, error) {
	if !d.noXattrat() {
		p, err := unix.BytePtrFromString(name)
		if err != nil {
			return 0, err
		}
		a, err := unix.BytePtrFromString(attr)
		if err != nil {
			return 0, err
		}
		args := xattrArgs{size: uint32(len(buf))}
		if len(buf) > 0 {
			args.value = uint64(uintptr(unsafe.Pointer(&buf[0])))
		}
		n, _, e := unix.Syscall6(sysGetxattrat, uintptr(d.fd()), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW,
			uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
		runtime.KeepAlive(buf)
		if !d.unsupported(e) {
			return int(n), errnoErr(e)
		}
	}
	return unix.Lgetxattr(d.procPath(name), attr, buf)
}

// noXattrat reports whether the *xattrat calls were found missing.
func (d *dirHandle) noXattrat() bool { return d.noAt != nil && d.noAt.Load() }

// unsupported reports whether e says the kernel (or a seccomp filter)
// does not take the *xattrat calls, and remembers it for the walk.
func (d *dirHandle) unsupported(e syscall.Errno) bool {
	if e != unix.ENOSYS && e != unix.EPERM {
		return false
	}
	if d.noAt != nil {
		d.noAt.Store(true)
	}
	return true
}

// procPath names entry name of d through d's descriptor in /proc.
func (d *dirHandle) procPath(name string) string {
	return "/proc/self/fd/" + strconv.Itoa(d.fd()) + "/" + name
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
