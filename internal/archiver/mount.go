package archiver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nestguard/nestguard/internal/tree"
)

// setMounts checks Options.Mounts and indexes them by parent directory.
func (a *Archiver) setMounts() error {
	a.mounts = map[string][]Mount{}
	a.mounted = map[string]bool{}
	seen := map[string]bool{}
	for _, m := range a.opt.Mounts {
		p := filepath.FromSlash(m.Path)
		if p == "" || filepath.IsAbs(p) || filepath.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
			return fmt.Errorf("mount %q: want a clean relative path below the backed-up directory", m.Path)
		}
		if seen[p] {
			return fmt.Errorf("mount %q given twice", m.Path)
		}
		seen[p] = true
		parent := filepath.Dir(p)
		if parent == "." {
			parent = ""
		}
		a.mounts[parent] = append(a.mounts[parent], Mount{Path: p, Dir: m.Dir})
	}
	return nil
}

// isMount reports whether rel is the path of a mount, which replaces
// the entry found there.
func (a *Archiver) isMount(rel string) bool {
	for _, m := range a.mounts[filepathDir(rel)] {
		if m.Path == rel {
			return true
		}
	}
	return false
}

func filepathDir(rel string) string {
	d := filepath.Dir(rel)
	if d == "." {
		return ""
	}
	return d
}

// saveMount backs up the directory of mount m as the entry at m.Path; pn
// is the parent snapshot's node there. A mount that cannot be read fails
// the backup: its caller asked for it by name.
func (a *Archiver) saveMount(ctx context.Context, m Mount, pn *tree.Node) *future {
	fail := func(err error) *future {
		err = fmt.Errorf("%s (%s): %w", m.Path, m.Dir, err)
		a.fatal(err)
		return &future{done: closed(), err: err}
	}
	dir, err := filepath.EvalSymlinks(m.Dir)
	if err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fail(err)
	}
	if !fi.IsDir() {
		return fail(fmt.Errorf("%s is not a directory", dir))
	}
	n, err := a.node(dir, fi)
	if err != nil {
		return fail(err)
	}
	n.Name = filepath.Base(m.Path)
	a.mountMu.Lock()
	a.mounted[m.Path] = true
	a.mountMu.Unlock()
	return a.walkDir(ctx, nil, dir, m.Path, n, pn, deviceOf(fi))
}

// checkMounted fails a backup that left out a mount, because its parent
// directory was excluded or missing.
func (a *Archiver) checkMounted() error {
	a.mountMu.Lock()
	defer a.mountMu.Unlock()
	for _, ms := range a.mounts {
		for _, m := range ms {
			if !a.mounted[m.Path] {
				return fmt.Errorf("mount %s (%s): its parent directory %s is not part of the backup", m.Path, m.Dir, filepathDir(m.Path))
			}
		}
	}
	return nil
}
