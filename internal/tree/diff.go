package tree

import (
	"context"
	"path"
	"slices"

	"github.com/nestguard/nestguard/internal/id"
)

// Change is one difference between two trees.
type Change struct {
	Path string `json:"path"`
	// Kind is "+" added, "-" removed, "M" content changed, "T" type
	// changed, "U" metadata (mode, owner, times, extended attributes)
	// changed only.
	Kind string `json:"change"`
	Type string `json:"type"`
}

// Diff calls fn for every difference from tree a to tree b, in path order.
// Identical subtrees are skipped without being read.
func Diff(ctx context.Context, s BlobStore, a, b id.ID, fn func(Change) error) error {
	return diffDir(ctx, s, "/", &a, &b, fn)
}

func diffDir(ctx context.Context, s BlobStore, dir string, a, b *id.ID, fn func(Change) error) error {
	if a != nil && b != nil && *a == *b {
		return nil
	}
	load := func(t *id.ID) (*Tree, error) {
		if t == nil {
			return &Tree{}, nil
		}
		return Load(ctx, s, *t)
	}
	ta, err := load(a)
	if err != nil {
		return err
	}
	tb, err := load(b)
	if err != nil {
		return err
	}
	i, j := 0, 0
	for i < len(ta.Nodes) || j < len(tb.Nodes) {
		var na, nb *Node
		switch {
		case j >= len(tb.Nodes) || (i < len(ta.Nodes) && ta.Nodes[i].Name < tb.Nodes[j].Name):
			na = ta.Nodes[i]
			i++
		case i >= len(ta.Nodes) || tb.Nodes[j].Name < ta.Nodes[i].Name:
			nb = tb.Nodes[j]
			j++
		default:
			na, nb = ta.Nodes[i], tb.Nodes[j]
			i++
			j++
		}
		if err := diffNode(ctx, s, dir, na, nb, fn); err != nil {
			return err
		}
	}
	return nil
}

func diffNode(ctx context.Context, s BlobStore, dir string, na, nb *Node, fn func(Change) error) error {
	switch {
	case nb == nil:
		p := path.Join(dir, na.Name)
		if err := fn(Change{Path: p, Kind: "-", Type: na.Type}); err != nil {
			return err
		}
		if na.Type == Dir {
			return diffDir(ctx, s, p, na.Subtree, nil, fn)
		}
		return nil
	case na == nil:
		p := path.Join(dir, nb.Name)
		if err := fn(Change{Path: p, Kind: "+", Type: nb.Type}); err != nil {
			return err
		}
		if nb.Type == Dir {
			return diffDir(ctx, s, p, nil, nb.Subtree, fn)
		}
		return nil
	}
	p := path.Join(dir, na.Name)
	if na.Type != nb.Type {
		if err := fn(Change{Path: p, Kind: "T", Type: nb.Type}); err != nil {
			return err
		}
		var sa, sb *id.ID
		if na.Type == Dir {
			sa = na.Subtree
		}
		if nb.Type == Dir {
			sb = nb.Subtree
		}
		if sa != nil || sb != nil {
			return diffDir(ctx, s, p, sa, sb, fn)
		}
		return nil
	}
	if na.Type == Dir {
		if metaChanged(na, nb) {
			if err := fn(Change{Path: p, Kind: "U", Type: Dir}); err != nil {
				return err
			}
		}
		return diffDir(ctx, s, p, na.Subtree, nb.Subtree, fn)
	}
	switch {
	case !slices.Equal(na.Content, nb.Content) || na.LinkTarget != nb.LinkTarget || na.Size != nb.Size || na.Rdev != nb.Rdev:
		return fn(Change{Path: p, Kind: "M", Type: nb.Type})
	case metaChanged(na, nb):
		return fn(Change{Path: p, Kind: "U", Type: nb.Type})
	}
	return nil
}

func metaChanged(a, b *Node) bool {
	return a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || !a.ModTime.Equal(b.ModTime) ||
		!slices.EqualFunc(a.Xattrs, b.Xattrs, Xattr.equal)
}
