package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nestguard/nestguard/internal/backend"
)

// listBatch bounds the directory entries held in memory at once: a WAL
// archive can hold hundreds of thousands of objects.
const listBatch = 1024

// List implements backend.Backend. Temporary files and anything that is not
// a regular file are skipped; a missing type directory is an empty list.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	switch {
	case t == backend.ConfigFile:
		fi, err := b.Stat(ctx, backend.Handle{Type: t})
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", t, err)
		}
		return fn(fi)
	case t == backend.PackFile:
		for i := range 256 {
			if err := listDir(ctx, b.packDir(i), fn); err != nil {
				return err
			}
		}
		return nil
	case knownType(t):
		return listDir(ctx, filepath.Join(b.dir, string(t)), fn)
	}
	return fmt.Errorf("listing: unknown object type %q", t)
}

// ListNames implements backend.NameLister: List without a stat of every
// object. The objects it names are those List gives, but for one removed
// while listing, which List skips and ListNames may still name.
func (b *Backend) ListNames(ctx context.Context, t backend.FileType, fn func(string) error) error {
	if t == backend.ConfigFile || !knownType(t) {
		return b.List(ctx, t, func(fi backend.FileInfo) error { return fn(fi.Name) })
	}
	dirs := []string{filepath.Join(b.dir, string(t))}
	if t == backend.PackFile {
		dirs = dirs[:0]
		for i := range 256 {
			dirs = append(dirs, b.packDir(i))
		}
	}
	for _, dir := range dirs {
		if err := readDir(ctx, dir, func(e fs.DirEntry) error { return fn(e.Name()) }); err != nil {
			return err
		}
	}
	return nil
}

func listDir(ctx context.Context, dir string, fn func(backend.FileInfo) error) error {
	return readDir(ctx, dir, func(e fs.DirEntry) error {
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while listing
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", dir, err)
		}
		return fn(backend.FileInfo{Name: fi.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	})
}

// readDir calls fn for every regular file of dir but temporary ones, a
// batch of entries at a time; a missing directory is empty.
func readDir(ctx context.Context, dir string, fn func(fs.DirEntry) error) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	defer d.Close()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("listing %s: %w", dir, err)
		}
		entries, err := d.ReadDir(listBatch)
		for _, e := range entries {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), tempPrefix) {
				continue
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", dir, err)
		}
	}
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	p, err := b.path(h)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("removing %s: %w", h, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("removing %s: %w", h, err)
	}
	return nil
}
