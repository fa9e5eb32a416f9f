package restorer

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// beneath creates entries below the restore target without ever following
// a symlink below it: a target restored into with --overwrite may hold
// symlinks (to anywhere) where the snapshot has files or directories, and
// writing through one would write outside the target. Paths are relative
// to the target, slash-separated, made of names tree.Decode validated.
//
// Opens use openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS; where the
// kernel lacks it (before 5.6, or a seccomp filter refuses it), each
// component is opened with O_NOFOLLOW from the directory before it, which
// is as safe. A symlink swapped in by another process during the restore
// is out of scope for the metadata calls on directories, symlinks and
// special files, which take paths (see setMeta).
type beneath struct {
	fd        int    // the target directory, O_PATH
	dev       uint64 // its file system
	noOpenat2 atomic.Bool

	mu     sync.Mutex
	others map[uint64]string // file system -> the first directory kept (mkdir) on it, if not the target's
}

func openBeneath(dir string) (*beneath, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: dir, Err: err}
	}
	return &beneath{fd: fd, dev: st.Dev}, nil
}

// mounts lists a directory, relative to the target, of each other file
// system than the target's that mkdir found mounted below it: what is
// restored into them is synced with them.
func (b *beneath) mounts() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(maps.Values(b.others))
}

func (b *beneath) close() { unix.Close(b.fd) }

// open opens rel below the target; its last component is never followed
// either.
func (b *beneath) open(rel string, flags int, mode uint32) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !b.noOpenat2.Load() {
		fd, err := unix.Openat2(b.fd, rel, &unix.OpenHow{
			Flags:   uint64(flags),
			Mode:    uint64(mode),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		switch {
		case errors.Is(err, unix.ENOSYS):
			b.noOpenat2.Store(true)
		case errors.Is(err, unix.EPERM):
			// A seccomp filter, or a real EPERM that the fallback reports.
		case errors.Is(err, unix.ENAMETOOLONG):
			// Past PATH_MAX for one call, which a tree whose names are
			// each within NAME_MAX can be: one component at a time.
		default:
			return fd, err
		}
	}
	return b.openEach(rel, flags, mode)
}

// openEach is open without openat2: every directory on the way is opened
// with O_NOFOLLOW|O_DIRECTORY from the one before it.
func (b *beneath) openEach(rel string, flags int, mode uint32) (int, error) {
	parts := strings.Split(rel, "/")
	dfd := b.fd
	for _, c := range parts[:len(parts)-1] {
		if c == ".." {
			return -1, unix.EXDEV
		}
		fd, err := unix.Openat(dfd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if dfd != b.fd {
			unix.Close(dfd)
		}
		if err != nil {
			return -1, err
		}
		dfd = fd
	}
	if parts[len(parts)-1] == ".." {
		return -1, unix.EXDEV
	}
	fd, err := unix.Openat(dfd, parts[len(parts)-1], flags, mode)
	if dfd != b.fd {
		unix.Close(dfd)
	}
	return fd, err
}

// parent opens the directory that holds rel and returns it with rel's
// last name.
func (b *beneath) parent(rel string) (int, string, error) {
	fd, err := b.open(path.Dir(rel), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", fmt.Errorf("opening the directory of %s: %w", rel, err)
	}
	return fd, path.Base(rel), nil
}

// mkdir makes directory rel, or keeps the directory that is there. Anything
// else in its place (a file, a symlink) is removed when replace is set,
// else an error.
func (b *beneath) mkdir(rel string, replace bool) error {
	pfd, name, err := b.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	err = unix.Mkdirat(pfd, name, 0o700)
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		// A directory kept that its owner cannot write or search (a
		// snapshot's 0500, restored before) is opened to its owner for
		// the restore, which sets the snapshot's mode again when it ends
		// (found by a hostile test: a non-root restore --overwrite over
		// its own earlier one failed in such directories). Another
		// owner's stays as it is (the chmod fails; writing in it fails
		// and is reported).
		if replace && st.Mode&0o300 != 0o300 {
			_ = unix.Fchmodat(pfd, name, st.Mode&0o7777|0o700, 0)
		}
		// Only a directory that was there can be another file
		// system's: one mkdir makes is its parent's.
		if st.Dev != b.dev {
			b.mu.Lock()
			if _, ok := b.others[st.Dev]; !ok {
				if b.others == nil {
					b.others = map[uint64]string{}
				}
				b.others[st.Dev] = rel
			}
			b.mu.Unlock()
		}
		return nil
	}
	if !replace {
		return errors.New("exists and is not a directory")
	}
	if err := unix.Unlinkat(pfd, name, 0); err != nil {
		return fmt.Errorf("removing what is in the directory's place: %w", err)
	}
	return unix.Mkdirat(pfd, name, 0o700)
}

// remove removes rel if it is not a directory; a symlink is removed, not
// its target.
func (b *beneath) remove(rel string) {
	if pfd, name, err := b.parent(rel); err == nil {
		_ = unix.Unlinkat(pfd, name, 0)
		unix.Close(pfd)
	}
}

// special makes a symlink, FIFO or device node rel.
func (b *beneath) special(rel string, mk func(pfd int, name string) error) error {
	pfd, name, err := b.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return mk(pfd, name)
}

// link makes newRel a hard link of oldRel.
func (b *beneath) link(oldRel, newRel string) error {
	opfd, oname, err := b.parent(oldRel)
	if err != nil {
		return err
	}
	defer unix.Close(opfd)
	npfd, nname, err := b.parent(newRel)
	if err != nil {
		return err
	}
	defer unix.Close(npfd)
	return unix.Linkat(opfd, oname, npfd, nname, 0)
}

// parents creates files below the target through the directories it last
// created files in, kept open: a file is then one name opened in its
// directory instead of its whole path walked again. Each directory is
// opened beneath the target without symlinks (beneath.open) and the name
// created with O_EXCL, never followed. The directory is checked when it
// is opened, not at each create: one another process moves out of the
// target or replaces while it is kept still gets the files, where a walk
// of the whole path would have failed. The restorer keeps them for one
// batch of files at most (close), and such a race is out of scope as it
// is for setMeta's paths. Not safe for concurrent use: the restorer
// creates files under its createMu.
type parents struct {
	b    *beneath
	dirs [4]parentDir // most recently used first
}

type parentDir struct {
	rel  string
	fd   int // O_PATH
	open bool
}

// create makes the new regular file rel, open for writing; it fails if
// anything (a symlink included) has that name, unless replace: then
// whatever has its name (not a directory) is removed first, never
// written through.
func (p *parents) create(rel string, replace bool) (*os.File, error) {
	dfd, name, err := p.parent(rel)
	if err != nil {
		return nil, err
	}
	var unlinkErr error
	if replace {
		unlinkErr = unix.Unlinkat(dfd, name, 0)
	}
	fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		// What stood in the way says why, not the create's EEXIST (found
		// by a hostile test: an immutable file, a directory).
		switch {
		case errors.Is(err, unix.EEXIST) && errors.Is(unlinkErr, unix.EISDIR):
			return nil, errors.New("a directory is in the way (a restore never removes a directory's contents)")
		case errors.Is(err, unix.EEXIST) && unlinkErr != nil && !errors.Is(unlinkErr, unix.ENOENT):
			return nil, fmt.Errorf("cannot remove the entry in the way: %w", unlinkErr)
		}
		return nil, err
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// parent is beneath.parent through the directories kept open: the
// directory that holds rel, from them, or opened and kept in place of the
// one least recently used.
func (p *parents) parent(rel string) (int, string, error) {
	dir := path.Dir(rel)
	for i, d := range p.dirs {
		if d.open && d.rel == dir {
			copy(p.dirs[1:i+1], p.dirs[:i])
			p.dirs[0] = d
			return d.fd, path.Base(rel), nil
		}
	}
	fd, name, err := p.b.parent(rel)
	if err != nil {
		return -1, "", err
	}
	if last := p.dirs[len(p.dirs)-1]; last.open {
		unix.Close(last.fd)
	}
	copy(p.dirs[1:], p.dirs[:len(p.dirs)-1])
	p.dirs[0] = parentDir{rel: dir, fd: fd, open: true}
	return fd, name, nil
}

// close closes the directories kept open.
func (p *parents) close() {
	for i, d := range p.dirs {
		if d.open {
			unix.Close(d.fd)
		}
		p.dirs[i] = parentDir{}
	}
}
