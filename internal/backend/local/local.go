// Package local stores a repository in a directory on a local file system:
// the embedded default backend.
//
// Layout: dir/config, dir/<type>/<name>, and packs under
// dir/data/<first 2 hex digits of the name>/<name>. Objects are written to a
// temporary file (in their final directory, or in dir for a streamed
// object, whose name is known only at the end), synced, made read-only, and
// then hard-linked to their name. A link never replaces an existing name, so two
// processes saving the same object race safely: one wins, the other gets
// fs.ErrExist, and nobody ever sees a partial object under a real name.
package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/hugemem"
)

const (
	dirMode    = 0o700
	objectMode = 0o400
	// tempPrefix starts the name of every temporary file; List never
	// reports such names and Save refuses them as object names.
	tempPrefix = ".tmp-"
)

// Backend is a repository in a local directory. It is safe for concurrent
// use, also by several processes at once.
type Backend struct {
	dir    string       // absolute
	direct hugemem.Pool // buffers of direct reads (direct.go)
	// directRanges counts the ranges read directly, for tests.
	directRanges atomic.Int64
}

var _ backend.Backend = (*Backend)(nil)

// Create makes the directory layout of a repository at dir (which may
// already exist) and returns the backend. It does not check for an existing
// repository: the repository layer does that by looking for the config.
func Create(dir string) (*Backend, error) {
	b, err := newBackend(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.dir, dirMode); err != nil {
		return nil, fmt.Errorf("creating repository directory: %w", err)
	}
	for _, t := range backend.ObjectTypes() {
		if err := mkdir(filepath.Join(b.dir, string(t))); err != nil {
			return nil, fmt.Errorf("creating repository layout: %w", err)
		}
	}
	// Pack subdirectories (data/00 to data/ff) are made by the first Save
	// into each (createTemp, linkNew; MkdirAll tolerates a racing one):
	// 256 empty directories made up front cost 1 MiB of disk, more than a
	// small repository's index.
	// Make the new directory entries durable before any object lands in them.
	for _, d := range []string{filepath.Join(b.dir, string(backend.PackFile)), b.dir} {
		if err := syncDir(d); err != nil {
			return nil, fmt.Errorf("creating repository layout: %w", err)
		}
	}
	// The parent may be writable but not readable (a drop-box directory),
	// and then cannot be opened to sync: that must not prevent init.
	if err := syncDir(filepath.Dir(b.dir)); err != nil && !errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("creating repository layout: %w", err)
	}
	return b, nil
}

// Open returns the backend for an existing repository at dir. A missing
// directory is not an error here: loading the config then fails with
// fs.ErrNotExist, which the repository layer reports as "no repository".
func Open(dir string) (*Backend, error) {
	b, err := newBackend(dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(b.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("opening repository: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("repository %s is not a directory", b.dir)
	}
	return b, nil
}

func newBackend(dir string) (*Backend, error) {
	if dir == "" {
		return nil, errors.New("no repository directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("repository directory %q: %w", dir, err)
	}
	return &Backend{dir: abs, direct: hugemem.Pool{Keep: directKeep}}, nil
}

// Location returns the absolute directory of the repository.
func (b *Backend) Location() string { return b.dir }

// Close implements backend.Backend: it frees the buffers kept for direct
// reads (reads after it still work, without keeping buffers).
func (b *Backend) Close() error {
	b.direct.Close()
	return nil
}

func (b *Backend) packDir(i int) string {
	return filepath.Join(b.dir, string(backend.PackFile), fmt.Sprintf("%02x", i))
}

// path returns the file of h after checking that its name cannot escape
// its directory or collide with a temporary file.
func (b *Backend) path(h backend.Handle) (string, error) {
	if h.Type == backend.ConfigFile {
		return filepath.Join(b.dir, string(backend.ConfigFile)), nil
	}
	if !knownType(h.Type) {
		return "", fmt.Errorf("object %s: unknown object type %q", h, h.Type)
	}
	rel, err := relPath(h)
	if err != nil {
		return "", err
	}
	return filepath.Join(b.dir, string(h.Type), rel), nil
}

// relPath returns the file of h (not the config) relative to its type's
// directory after checking its name as path does: the name, or for a
// pack the subdirectory of its first two hex digits and the name.
func relPath(h backend.Handle) (string, error) {
	if err := checkName(h.Name); err != nil {
		return "", fmt.Errorf("object %s: %w", h, err)
	}
	if h.Type == backend.PackFile {
		if len(h.Name) < 2 || !isLowerHex(h.Name[0]) || !isLowerHex(h.Name[1]) {
			return "", fmt.Errorf("object %s: a pack name must start with two lowercase hex digits", h)
		}
		return h.Name[:2] + "/" + h.Name, nil
	}
	return h.Name, nil
}

func knownType(t backend.FileType) bool {
	for _, k := range backend.ObjectTypes() {
		if t == k {
			return true
		}
	}
	return false
}

// checkName accepts names that are one plain path element. Leading dots are
// refused: that excludes ".", ".." and temporary names in one rule, and no
// repository object name starts with one.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty object name")
	case len(name) > 255:
		return fmt.Errorf("object name of %d bytes is too long", len(name))
	case name[0] == '.':
		return fmt.Errorf("invalid object name %q: starts with a dot", name)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("invalid object name %q: contains a path separator or NUL", name)
	}
	return nil
}

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

func mkdir(dir string) error {
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// syncDir makes the directory entries of dir (creations, removals) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, syscall.EINVAL) {
		// Some file systems (FUSE, some network mounts) cannot sync a
		// directory; their entries are as durable as they get.
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
