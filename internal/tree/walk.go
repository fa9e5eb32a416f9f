package tree

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/nestguard/nestguard/internal/id"
)

// WalkFunc is called for every node under a tree with its slash-separated
// path relative to the snapshot root ("/a/b"). Returning SkipDir from a
// directory skips its contents.
type WalkFunc func(p string, n *Node) error

// SkipDir tells Walk not to descend into a directory.
var SkipDir = skipDir{}

type skipDir struct{}

func (skipDir) Error() string { return "skip this directory" }

// Walk visits the tree rooted at root depth-first in name order, one tree
// at a time, calling fn for every node with its path. A subtree that cannot
// be loaded is passed to onErr with its path; Walk continues with its
// siblings unless onErr returns an error.
//
// Walk is the ordered form of a traversal, for restore and ls, which need
// every path of one snapshot in order (a tree found at two paths is walked
// twice). Everything that needs every tree rather than every path (verify,
// copy, stats, retention) uses Visitor, which loads trees in parallel and
// each distinct tree once. Both load trees with Load.
func Walk(ctx context.Context, s BlobStore, root id.ID, fn WalkFunc, onErr func(p string, err error) error) error {
	return walk(ctx, s, "/", root, fn, onErr)
}

func walk(ctx context.Context, s BlobStore, dir string, tid id.ID, fn WalkFunc, onErr func(string, error) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := Load(ctx, s, tid)
	if err != nil {
		if onErr == nil {
			return err
		}
		return onErr(dir, err)
	}
	for _, n := range t.Nodes {
		p := path.Join(dir, n.Name)
		err := fn(p, n)
		if err == SkipDir {
			continue
		}
		if err != nil {
			return err
		}
		if n.Type == Dir && n.Subtree != nil {
			if err := walk(ctx, s, p, *n.Subtree, fn, onErr); err != nil {
				return err
			}
		}
	}
	return nil
}

// ErrNotFound is returned by Lookup for a path the tree does not hold.
var ErrNotFound = errors.New("no such path in the snapshot")

// Lookup returns the node at the slash-separated path p ("/a/b") of the
// tree rooted at root, matching names byte for byte. The root itself,
// "/", is returned as a directory node whose Subtree is root. Only the
// trees on the way are read.
func Lookup(ctx context.Context, s BlobStore, root id.ID, p string) (*Node, error) {
	n := &Node{Name: "/", Type: Dir, Subtree: &root}
	p = path.Clean("/" + p)
	if p == "/" {
		return n, nil
	}
	for _, name := range strings.Split(p[1:], "/") {
		if n.Type != Dir || n.Subtree == nil {
			return nil, fmt.Errorf("%q: %w", p, ErrNotFound)
		}
		t, err := Load(ctx, s, *n.Subtree)
		if err != nil {
			return nil, err
		}
		if n = t.Find(name); n == nil {
			return nil, fmt.Errorf("%q: %w", p, ErrNotFound)
		}
	}
	return n, nil
}
