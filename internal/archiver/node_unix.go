package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/tree"
)

// node builds the tree node for abs from its lstat result, and reports
// any error reading its extended attributes.
func (a *Archiver) node(abs string, fi fs.FileInfo) (*tree.Node, error) {
	n, xerrs, err := a.listedNode(nil, abs, fi)
	if err != nil {
		return nil, err
	}
	a.reportXattrs(abs, xerrs)
	return n, nil
}

// listedNode is node without the reporting: it returns the errors
// reading the extended attributes instead. A regular file's are reported
// once it is opened (opened), or dropped if its metadata are taken from
// the open descriptor then: those of the file read are the ones stored,
// and reporting both read the same failure twice, or one that no longer
// applies.
//
// A symbolic link's target is read as entry abs's last element of dir,
// or, with dir nil, by its path.
func (a *Archiver) listedNode(dir *dirHandle, abs string, fi fs.FileInfo) (*tree.Node, []error, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, nil, fmt.Errorf("%s: no unix stat information", abs)
	}
	n := &tree.Node{Name: fi.Name()}
	a.setStatus(abs, n, st)
	if abs == "/" {
		n.Name = "/"
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		n.Type = tree.File
		n.Size = uint64(fi.Size())
	case m.IsDir():
		n.Type = tree.Dir
		n.Links = 0 // directory link counts change with every subdirectory
	case m&fs.ModeSymlink != 0:
		n.Type = tree.Symlink
		t, err := readlinkIn(dir, abs)
		if err != nil {
			return nil, nil, err
		}
		n.LinkTarget = t
	case m&fs.ModeNamedPipe != 0:
		n.Type = tree.FIFO
	case m&fs.ModeSocket != 0:
		n.Type = tree.Socket
	case m&fs.ModeCharDevice != 0:
		n.Type = tree.CharDev
		n.Rdev = uint64(st.Rdev)
	case m&fs.ModeDevice != 0:
		n.Type = tree.Dev
		n.Rdev = uint64(st.Rdev)
	default:
		return nil, nil, fmt.Errorf("%s: unsupported file type %v", abs, m.Type())
	}
	var xerrs []error
	// A directory's by the path, followed: the same for a directory, and
	// the directory's, not the link's, where a path given to the backup
	// is a symbolic link it follows (see saveVirtual).
	src := xattrSource{fd: -1, path: abs, follow: n.Type == tree.Dir}
	if dir != nil {
		src = xattrSource{fd: -1, dir: dir, name: filepath.Base(abs)}
	}
	n.Xattrs, xerrs = readXattrs(src)
	if len(xerrs) == 1 && errors.Is(xerrs[0], fs.ErrNotExist) {
		// Deleted since it was stated: left out, as a file deleted
		// before its open is (see saveDir).
		return nil, nil, fmt.Errorf("deleted during the backup: %w", xerrs[0])
	}
	return n, xerrs, nil
}

// setStatus sets the metadata of n that a file's status holds (mode
// bits, times, owner, inode, device, links): the one place they are
// taken from, whether from the walk's lstat (node) or from the open
// descriptor's fstat (opened). Size and type stay the caller's.
func (a *Archiver) setStatus(p string, n *tree.Node, st *syscall.Stat_t) {
	n.Mode = fileMode(st) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	n.ModTime, n.ChangeTime = a.storableTime(p, "modification", st.Mtim), a.storableTime(p, "change", st.Ctim)
	n.UID, n.GID = st.Uid, st.Gid
	n.User, n.Group = a.ids.user(st.Uid), a.ids.group(st.Gid)
	n.Inode, n.DeviceID, n.Links = st.Ino, uint64(st.Dev), uint64(st.Nlink)
}

func deviceOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev)
	}
	return 0
}

// fstat returns the status of the file open as fd (named p in errors).
func fstat(fd int, p string) (syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return st, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return st, nil
}

// opened checks the file just opened for j against the node the walk
// made of it (from its lstat, with extended attributes read by path).
// A path replaced since (another device or inode: a file renamed over
// it), or a file changed since (its size, mtime or ctime: written, or
// its mode, owner or attributes set), would store the walk's metadata
// with the content read now, a file that never existed: the node is made
// again from st, the status of the open descriptor fd, with the
// attributes (and so the ACLs) read from the descriptor, so that it
// describes the file whose content is read.
//
// Taking the metadata from the descriptor, rather than calling the file
// changed, is the choice that never pairs one file's metadata with
// another's content: calling it changed would still store something
// (the listed metadata with the new content, the mix F4 found) or drop
// a file that can be copied consistently. This stores what the path
// held when it was opened, as if the walk had come a moment later; the
// fstat after the read (changedWhileRead) then says whether the content
// is one state of that file. A path that is no longer a regular file is
// an error, as before. The walk's node costs nothing more when the file
// did not change: one fstat, which the read needed anyway. The errors
// reading the attributes of the node that stays (the walk's, j.xattrErrs,
// or the descriptor's) are reported here.
func (a *Archiver) opened(j *fileJob, fd int, st *syscall.Stat_t) error {
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fmt.Errorf("%s is no longer a regular file", j.abs)
	}
	n := j.f.node
	replaced := uint64(st.Dev) != n.DeviceID || st.Ino != n.Inode
	if !replaced && st.Size == int64(n.Size) && stampTime(st.Mtim).Equal(n.ModTime) && stampTime(st.Ctim).Equal(n.ChangeTime) {
		a.reportXattrs(j.abs, j.xattrErrs)
		return nil
	}
	if replaced {
		a.log.Info("file replaced since it was listed: its metadata are taken from the file read", "path", j.abs,
			"inode_listed", n.Inode, "inode_read", st.Ino)
	}
	a.setStatus(j.abs, n, st)
	n.Size = uint64(st.Size)
	var xerrs []error
	n.Xattrs, xerrs = readXattrs(xattrSource{fd: fd, path: j.abs})
	a.reportXattrs(j.abs, xerrs)
	return nil
}

// readChanged reports whether a file's status after its read (after)
// differs from the one before it (before) in size, mtime or ctime: it was
// written, truncated or had its metadata changed while it was read, and
// what was read may mix its states. Within one tick of the file system's
// timestamps a write leaves them as they were, unless the size changed.
func readChanged(before, after *syscall.Stat_t) bool {
	return before.Size != after.Size || before.Mtim != after.Mtim || before.Ctim != after.Ctim
}

// changedWhileRead is readChanged of the file open as fd (named p), whose
// status before the read was before: one fstat more per file, none per
// chunk.
func (a *Archiver) changedWhileRead(fd int, p string, before *syscall.Stat_t) (bool, error) {
	after, err := fstat(fd, p)
	if err != nil {
		return false, err
	}
	return readChanged(before, &after), nil
}

func stampTime(ts syscall.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec).UTC() }

// Times a tree can store (RFC 3339 text: years 0 to 9999).
var (
	firstStorable = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	lastStorable  = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// storableTime is ts, the kind time of the entry at p, as a tree can
// store it: a time outside the years 0 to 9999 (which tmpfs, btrfs or XFS
// keep, and any user may set) is stored as the nearest one that fits and
// reported for the entry, so that the backup is partial and says why. It
// failed the whole backup (found by review: one file dated 10000).
func (a *Archiver) storableTime(p, kind string, ts syscall.Timespec) time.Time {
	t := stampTime(ts)
	switch {
	case t.Before(firstStorable):
		a.fileError(p, fmt.Errorf("%s time %d s since 1970 is before the year 0, which a snapshot cannot hold: saved as %s", kind, ts.Sec, firstStorable.Format(time.RFC3339)))
		return firstStorable
	case t.After(lastStorable):
		a.fileError(p, fmt.Errorf("%s time %d s since 1970 is after the year 9999, which a snapshot cannot hold: saved as %s", kind, ts.Sec, lastStorable.Format(time.RFC3339Nano)))
		return lastStorable
	}
	return t
}

// readlinkIn reads the target of symbolic link abs, entry abs's last
// element of dir (nil: by its path).
func readlinkIn(dir *dirHandle, abs string) (string, error) {
	if dir == nil {
		return os.Readlink(abs)
	}
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		var n int
		err := ignoringEINTR(func() (err error) {
			n, err = unix.Readlinkat(dir.fd(), filepath.Base(abs), buf)
			return err
		})
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: abs, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// openJob opens the file of j for reading as openRaw does, as an
// os.File.
func openJob(ctx context.Context, j *fileJob) (*os.File, error) {
	fd, err := openRaw(ctx, j)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), j.abs), nil
}

// chunkSmall chunks a file that its listing found smaller than the
// minimum chunk through its descriptor alone: os.OpenFile costs five
// system calls more than open on Linux (two fcntl to set O_NONBLOCK, an
// epoll_ctl that a regular file refuses, two fcntl to clear it again),
// which were 10% of the CPU of a first backup of tiny files. done is
// false when the file has grown past the minimum chunk since: the caller
// reads it as any other file.
func (a *Archiver) chunkSmall(ctx context.Context, j *fileJob) (ids []id.ID, done bool, err error) {
	fd, err := openRaw(ctx, j)
	if err != nil {
		return nil, true, err
	}
	defer unix.Close(fd)
	st, err := fstat(fd, j.abs)
	if err != nil {
		return nil, true, err
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Size >= int64(a.opt.Chunker.Min) {
		return nil, false, nil
	}
	if err := a.opened(j, fd, &st); err != nil {
		return nil, true, err
	}
	c := &chunks{}
	err = a.split(ctx, j, c, &wholeFile{rd: rawFile{fd: fd, path: j.abs}, size: st.Size})
	changed := false
	if err == nil && !a.opt.ExpectWrites {
		changed, err = a.changedWhileRead(fd, j.abs, &st)
	}
	c.wg.Wait()
	ids, err = a.chunked(ctx, j, c, st.Size, changed, err)
	return ids, true, err
}

// leaseWait bounds the waits of openRaw for a lease's break: past the
// kernel's default lease-break-time.
const leaseWait = 64 * time.Second

// openRaw opens the file of j for reading, as the entry of its directory
// (j.dir; without one, by its path j.abs), and returns its descriptor:
// without updating its access time where the kernel allows it (owner or
// CAP_FOWNER); never through a symbolic link (a file replaced by one
// since the listing would have been read as the link's target, under
// this name: found by a hostile test); and without blocking in open,
// which a FIFO put in the file's place would do until a writer came (a
// stalled backup, found by the same test). What it opened is checked
// after (opened): another type than a regular file is refused.
func openRaw(ctx context.Context, j *fileJob) (int, error) {
	open := func(flags int) (int, error) { return openIn(j.dir, j.name, j.abs, flags) }
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOATIME
	fd, err := open(flags)
	if errors.Is(err, unix.EPERM) {
		flags &^= unix.O_NOATIME
		fd, err = open(flags)
	}
	// A lease another process holds on the file (Samba's oplocks, an NFS
	// server's delegations) fails a non-blocking open with EAGAIN at once
	// where a blocking one waits for the lease's break (lease-break-time,
	// 45 s by default): try again until then (found by review: such files
	// were no longer backed up).
	for wait := time.Millisecond; errors.Is(err, unix.EAGAIN) && wait <= leaseWait; wait *= 2 {
		select {
		case <-ctx.Done():
			return -1, context.Cause(ctx)
		case <-time.After(wait):
		}
		fd, err = open(flags)
	}
	if errors.Is(err, unix.ELOOP) {
		return -1, fmt.Errorf("%s is no longer a regular file (a symbolic link now, not followed)", j.abs)
	}
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: j.abs, Err: err}
	}
	return fd, nil
}

// rawFile reads a descriptor as an io.Reader.
type rawFile struct {
	fd   int
	path string
}

func (r rawFile) Read(b []byte) (int, error) {
	var n int
	err := ignoringEINTR(func() (err error) {
		n, err = unix.Read(r.fd, b)
		return err
	})
	switch {
	case err != nil:
		return 0, &fs.PathError{Op: "read", Path: r.path, Err: err}
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

// idNames caches uid and gid lookups: the user database is read once per id.
type idNames struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
	log    *slog.Logger
	// lookupUser and lookupGroup return the name of a numeric id; nil
	// means the system's user database (os/user).
	lookupUser, lookupGroup func(id string) (string, error)
}

func (c *idNames) user(uid uint32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.users[uid]; ok {
		return n
	}
	lookup := c.lookupUser
	if lookup == nil {
		lookup = func(id string) (string, error) {
			u, err := user.LookupId(id)
			if err != nil {
				return "", err
			}
			return u.Username, nil
		}
	}
	n := c.storable("user", uid, lookup)
	c.users[uid] = n
	return n
}

func (c *idNames) group(gid uint32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.groups[gid]; ok {
		return n
	}
	lookup := c.lookupGroup
	if lookup == nil {
		lookup = func(id string) (string, error) {
			g, err := user.LookupGroupId(id)
			if err != nil {
				return "", err
			}
			return g.Name, nil
		}
	}
	n := c.storable("group", gid, lookup)
	c.groups[gid] = n
	return n
}

// storable returns the name of id for a tree node: "" when there is none
// or when it is not UTF-8. A tree stores user and group names as JSON
// text (unlike file names, without their exact bytes), so such a name
// would not read back and would fail the whole backup; the numeric id,
// which restores use, is kept, and the name's loss is logged once.
func (c *idNames) storable(kind string, id uint32, lookup func(string) (string, error)) string {
	n, err := lookup(strconv.FormatUint(uint64(id), 10))
	if err != nil {
		return ""
	}
	if !utf8.ValidString(n) {
		if c.log != nil {
			c.log.Warn("a "+kind+" name is not UTF-8: files of this id are backed up with the numeric id only",
				kind+"_id", id, "name", tree.Show(n))
		}
		return ""
	}
	return n
}
