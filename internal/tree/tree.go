// Package tree defines directory tree objects: one blob per directory,
// listing its entries sorted by name with their metadata and, for files,
// the ordered IDs of their content chunks.
package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// Node types.
const (
	File    = "file"
	Dir     = "dir"
	Symlink = "symlink"
	Dev     = "dev"
	CharDev = "chardev"
	FIFO    = "fifo"
	Socket  = "socket"
)

// Node is one directory entry. Name and LinkTarget hold exact bytes, which
// need not be UTF-8 (see Escape for how they are encoded).
type Node struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Mode       fs.FileMode `json:"mode"` // permission and special bits (setuid, sticky, ...)
	ModTime    time.Time   `json:"mtime"`
	ChangeTime time.Time   `json:"ctime,omitzero"`
	UID        uint32      `json:"uid"`
	GID        uint32      `json:"gid"`
	User       string      `json:"user,omitempty"`
	Group      string      `json:"group,omitempty"`
	Inode      uint64      `json:"inode,omitempty"`
	DeviceID   uint64      `json:"device_id,omitempty"` // st_dev: with Inode, identifies hard links
	Links      uint64      `json:"links,omitempty"`
	Size       uint64      `json:"size,omitempty"`
	LinkTarget string      `json:"link_target,omitempty"`
	Rdev       uint64      `json:"rdev,omitempty"` // device number of device nodes
	Content    []id.ID     `json:"content,omitempty"`
	Subtree    *id.ID      `json:"subtree,omitempty"`
	Xattrs     []Xattr     `json:"xattrs,omitempty"` // sorted by name, names unique
}

// Xattr is one extended attribute, as the kernel lists it: any namespace
// the backup could read (user.*, security.*, trusted.*, and the POSIX ACLs
// as system.posix_acl_access and system.posix_acl_default, in the kernel's
// binary form). Both name and value are bytes; JSON holds them in base64.
type Xattr struct {
	Name  []byte `json:"name"`
	Value []byte `json:"value"`
}

// Tree is the content of one directory.
type Tree struct {
	Nodes []*Node `json:"nodes"`
	// ID is the blob the tree was loaded from; zero for a tree built in
	// memory. It is not part of the encoding.
	ID id.ID `json:"-"`
}

// Equal reports whether n and o encode alike: the same entry with the same
// metadata and content. Times compare as instants, not by location.
func (n *Node) Equal(o *Node) bool {
	return n.Name == o.Name && n.Type == o.Type && n.Mode == o.Mode &&
		n.ModTime.Equal(o.ModTime) && n.ChangeTime.Equal(o.ChangeTime) &&
		n.UID == o.UID && n.GID == o.GID && n.User == o.User && n.Group == o.Group &&
		n.Inode == o.Inode && n.DeviceID == o.DeviceID && n.Links == o.Links &&
		n.Size == o.Size && n.LinkTarget == o.LinkTarget && n.Rdev == o.Rdev &&
		slices.Equal(n.Content, o.Content) &&
		(n.Subtree == nil) == (o.Subtree == nil) && (n.Subtree == nil || *n.Subtree == *o.Subtree) &&
		slices.EqualFunc(n.Xattrs, o.Xattrs, Xattr.equal)
}

func (x Xattr) equal(o Xattr) bool {
	return bytes.Equal(x.Name, o.Name) && bytes.Equal(x.Value, o.Value)
}

// Equal reports whether t and o hold equal nodes in the same order.
func (t *Tree) Equal(o *Tree) bool {
	return slices.EqualFunc(t.Nodes, o.Nodes, (*Node).Equal)
}

// MaxSize bounds the encoded size of one tree blob.
const MaxSize = 64 << 20

// Encode returns the blob form of t. Nodes must be sorted by name and
// their names valid (ValidName). A name or link target that is not valid
// UTF-8 is stored as its exact bytes beside an escaped form (see Escape).
// The result is decoded again and compared with t, so a tree that would
// not read back as it is never leaves Encode.
func Encode(t *Tree) ([]byte, error) {
	for i, n := range t.Nodes {
		if n == nil {
			return nil, errNullNode
		}
		if err := ValidName(n.Name); err != nil {
			return nil, err
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			return nil, fmt.Errorf("tree nodes are not sorted by name, or duplicated, at %q", n.Name)
		}
	}
	for _, n := range t.Nodes {
		if err := checkXattrs(n.Xattrs); err != nil {
			return nil, fmt.Errorf("tree node %q: %w", n.Name, err)
		}
	}
	b, err := appendTree(make([]byte, 0, 16+256*len(t.Nodes)), t)
	if err != nil {
		return nil, fmt.Errorf("encoding tree: %w", err)
	}
	back, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("encoded tree does not decode: %w", err)
	}
	if !back.Equal(t) {
		return nil, errors.New("encoded tree decodes to a different tree")
	}
	return b, nil
}

var errNullNode = errors.New("null node")

// Decode parses a tree blob and checks its invariants.
func Decode(b []byte) (*Tree, error) {
	t, ok := decodeFast(b)
	if !ok {
		var err error
		if t, err = decodeJSON(b); err != nil {
			return nil, fmt.Errorf("tree: %w", err)
		}
	}
	for i, n := range t.Nodes {
		if err := ValidName(n.Name); err != nil {
			return nil, fmt.Errorf("tree: %w", err)
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			return nil, fmt.Errorf("tree: entries not sorted or duplicated at %q", n.Name)
		}
		if err := checkXattrs(n.Xattrs); err != nil {
			return nil, fmt.Errorf("tree: %q: %w", n.Name, err)
		}
		switch n.Type {
		case Dir:
			if n.Subtree == nil {
				return nil, fmt.Errorf("tree: directory %q has no subtree", n.Name)
			}
		case File, Symlink, Dev, CharDev, FIFO, Socket:
		default:
			return nil, fmt.Errorf("tree: %q has unknown type %q", n.Name, n.Type)
		}
	}
	return t, nil
}

// ValidName rejects names that could escape a restore target.
func ValidName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid entry name %q", name)
	}
	return nil
}

// checkXattrs holds the order Encode relies on restore being able to
// apply: names sorted, unique, non-empty and without NUL (the kernel
// takes C strings).
func checkXattrs(xs []Xattr) error {
	for i, x := range xs {
		if len(x.Name) == 0 || bytes.IndexByte(x.Name, 0) >= 0 {
			return fmt.Errorf("invalid extended attribute name %q", x.Name)
		}
		if i > 0 && bytes.Compare(xs[i-1].Name, x.Name) >= 0 {
			return fmt.Errorf("extended attributes not sorted or duplicated at %q", x.Name)
		}
	}
	return nil
}

// byName orders nodes by the bytes of their names.
func byName(a, b *Node) int { return strings.Compare(a.Name, b.Name) }

// Sort orders nodes by name, byte by byte.
func (t *Tree) Sort() { slices.SortFunc(t.Nodes, byName) }

// Find returns the node called name, or nil.
func (t *Tree) Find(name string) *Node {
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n *Node, s string) int { return strings.Compare(n.Name, s) })
	if !ok {
		return nil
	}
	return t.Nodes[i]
}

// BlobStore is what trees are saved to and loaded from.
type BlobStore interface {
	SaveBlob(ctx context.Context, t index.BlobType, data []byte) (id.ID, bool, error)
	LoadBlob(ctx context.Context, bid id.ID, dst []byte) ([]byte, error)
}

// Save stores t as a tree blob.
func Save(ctx context.Context, s BlobStore, t *Tree) (id.ID, error) {
	b, err := Encode(t)
	if err != nil {
		return id.ID{}, err
	}
	bid, _, err := s.SaveBlob(ctx, index.TreeBlob, b)
	return bid, err
}

// Load reads tree bid.
func Load(ctx context.Context, s BlobStore, bid id.ID) (*Tree, error) {
	b, err := s.LoadBlob(ctx, bid, nil)
	if err != nil {
		return nil, fmt.Errorf("loading tree %s: %w", bid.Short(), err)
	}
	t, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", bid.Short(), err)
	}
	t.ID = bid
	return t, nil
}

// MapIDs returns a copy of t with every content blob ID replaced by
// blob(ID) and every subtree ID by subtree(ID), in node order; t is not
// changed. Copying a tree into a repository whose blobs have other IDs
// (copy re-keys them) goes through here, so that trees are built only by
// this package and the archiver. The first error of a function is
// returned, naming the entry.
func (t *Tree) MapIDs(blob, subtree func(id.ID) (id.ID, error)) (*Tree, error) {
	nt := &Tree{Nodes: make([]*Node, len(t.Nodes))}
	for i, n := range t.Nodes {
		m := *n
		if len(n.Content) > 0 {
			m.Content = make([]id.ID, len(n.Content))
			for k, bid := range n.Content {
				nid, err := blob(bid)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", Show(n.Name), err)
				}
				m.Content[k] = nid
			}
		}
		if n.Subtree != nil {
			d, err := subtree(*n.Subtree)
			if err != nil {
				return nil, err
			}
			m.Subtree = &d
		}
		nt.Nodes[i] = &m
	}
	return nt, nil
}
