package archiver

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/tree"
	"github.com/nestguard/nestguard/internal/xattr"
)

// xattrSource is the file whose extended attributes are read: the open
// descriptor fd; or, when fd is -1, entry name of the open directory dir
// (never following a symbolic link at its end: relative to the directory
// the walk listed, whatever happened to the paths above it meanwhile:
// found by a hostile test, a parent swapped for a symbolic link gave a
// file another's attributes, security.capability included); or, with no
// dir, the path (not following a symlink at its end unless follow is
// set: a directory's, where a path given to the backup is a symbolic
// link to it, followed).
type xattrSource struct {
	fd     int
	dir    *dirHandle
	name   string
	path   string
	follow bool
}

func (s xattrSource) list(buf []byte) (int, error) {
	switch {
	case s.fd >= 0:
		return unix.Flistxattr(s.fd, buf)
	case s.dir != nil:
		return s.dir.listxattrAt(s.name, buf)
	case s.follow:
		return unix.Listxattr(s.path, buf)
	}
	return unix.Llistxattr(s.path, buf)
}

func (s xattrSource) get(name string, buf []byte) (int, error) {
	switch {
	case s.fd >= 0:
		return unix.Fgetxattr(s.fd, name, buf)
	case s.dir != nil:
		return s.dir.getxattrAt(s.name, name, buf)
	case s.follow:
		return unix.Getxattr(s.path, name, buf)
	}
	return unix.Lgetxattr(s.path, name, buf)
}

// readXattrs returns the extended attributes of src that this process
// can read, sorted by name: user.*, security.* (SELinux labels, file
// capabilities), trusted.* as root, and the POSIX ACLs as
// system.posix_acl_access and system.posix_acl_default; and an error for
// each attribute that could not be read (left out; the entry itself is
// kept), which the caller reports (reportXattrs).
func readXattrs(src xattrSource) ([]tree.Xattr, []error) {
	names, err := listXattrs(src)
	if err != nil {
		return nil, []error{fmt.Errorf("listing extended attributes: %w", err)}
	}
	var errs []error
	var xs []tree.Xattr
	for _, name := range names {
		v, err := getXattr(src, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since it was listed
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reading extended attribute %q: %w", name, err))
			continue
		}
		xs = append(xs, tree.Xattr{Name: []byte(name), Value: v})
	}
	slices.SortFunc(xs, func(a, b tree.Xattr) int { return bytes.Compare(a.Name, b.Name) })
	return xs, errs
}

// reportXattrs reports the errors readXattrs returned for the file p:
// the node is stored without the attributes that could not be read, and
// the backup is partial.
func (a *Archiver) reportXattrs(p string, errs []error) {
	for _, err := range errs {
		// The entry is saved, without the attribute (found by a hostile
		// test: logged as "cannot back up", as if the file were not).
		a.recordError(p, err, "extended attribute not saved: the entry is, without it")
	}
}

// listXattrs returns the names of a file's extended attributes. A file
// system without extended attributes has none.
func listXattrs(src xattrSource) ([]string, error) { return xattr.Names(src.list) }

func getXattr(src xattrSource, name string) ([]byte, error) {
	return xattr.Value(func(buf []byte) (int, error) { return src.get(name, buf) })
}
