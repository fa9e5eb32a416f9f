package archiver

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/tree"
)

// xattrs returns the extended attributes of p (not following a symlink)
// that this process can read, sorted by name: user.*, security.*
// (SELinux labels, file capabilities), trusted.* as root, and the POSIX
// ACLs as system.posix_acl_access and system.posix_acl_default. An
// attribute that cannot be read is reported as a file error and left
// out; the entry itself is kept.
func (a *Archiver) xattrs(p string) []tree.Xattr {
	return a.readXattrs(xattrSource{fd: -1, path: p})
}

// fxattrs is xattrs of the file open as fd (p names it in errors): those
// of the file whose content is read, whatever p names by then.
func (a *Archiver) fxattrs(fd int, p string) []tree.Xattr {
	return a.readXattrs(xattrSource{fd: fd, path: p})
}

// xattrSource is the file whose extended attributes are read: the open
// descriptor fd, or when fd is -1 the path (not following a symlink).
type xattrSource struct {
	fd   int
	path string
}

func (s xattrSource) list(buf []byte) (int, error) {
	if s.fd >= 0 {
		return unix.Flistxattr(s.fd, buf)
	}
	return unix.Llistxattr(s.path, buf)
}

func (s xattrSource) get(name string, buf []byte) (int, error) {
	if s.fd >= 0 {
		return unix.Fgetxattr(s.fd, name, buf)
	}
	return unix.Lgetxattr(s.path, name, buf)
}

func (a *Archiver) readXattrs(src xattrSource) []tree.Xattr {
	p := src.path
	names, err := listXattrs(src)
	if err != nil {
		a.fileError(p, fmt.Errorf("listing extended attributes: %w", err))
		return nil
	}
	var xs []tree.Xattr
	for _, name := range names {
		v, err := getXattr(src, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since it was listed
		}
		if err != nil {
			a.fileError(p, fmt.Errorf("reading extended attribute %q: %w", name, err))
			continue
		}
		xs = append(xs, tree.Xattr{Name: []byte(name), Value: v})
	}
	slices.SortFunc(xs, func(a, b tree.Xattr) int { return bytes.Compare(a.Name, b.Name) })
	return xs
}

// listXattrs returns the names of a file's extended attributes. A file
// system without extended attributes has none.
func listXattrs(src xattrSource) ([]string, error) {
	var small [256]byte
	buf := small[:]
	for {
		n, err := src.list(buf)
		switch {
		case errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case errors.Is(err, unix.ERANGE):
			// Grown since sized: ask for the size again.
			if n, err = src.list(nil); err != nil {
				return nil, err
			}
			buf = make([]byte, n+256)
			continue
		case err != nil:
			return nil, err
		case n == 0: // most files: no allocation
			return nil, nil
		}
		var names []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		return names, nil
	}
}

func getXattr(src xattrSource, name string) ([]byte, error) {
	var small [256]byte
	buf := small[:]
	for {
		n, err := src.get(name, buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = src.get(name, nil); err != nil {
				return nil, err
			}
			buf = make([]byte, n+256)
			continue
		}
		if err != nil {
			return nil, err
		}
		return bytes.Clone(buf[:n]), nil
	}
}
