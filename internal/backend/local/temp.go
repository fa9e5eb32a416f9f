package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
)

// CleanTemp implements backend.TempCleaner: it removes temporary files
// not written to for olderThan, left behind by processes killed in the
// middle of a Save or of a streamed pack, and returns how many it removed.
// A running writer keeps its temporary file's mtime fresh while it
// writes, so an age well above the longest pause between writes
// (backend.StaleTempAge) never removes one in use.
func (b *Backend) CleanTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	dirs := []string{b.dir}
	for _, t := range backend.ObjectTypes() {
		if t != backend.PackFile {
			dirs = append(dirs, filepath.Join(b.dir, string(t)))
		}
	}
	for i := range 256 {
		dirs = append(dirs, b.packDir(i))
	}
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	var errs []error
	for _, dir := range dirs {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		n, err := cleanDir(dir, cutoff)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("removing stale temporary files in %s: %w", b.dir, err)
	}
	return removed, nil
}

func cleanDir(dir string, cutoff time.Time) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			continue // gone already, or possibly still being written
		}
		err = os.Remove(filepath.Join(dir, e.Name()))
		switch {
		case err == nil:
			removed++
		case !errors.Is(err, fs.ErrNotExist): // another process cleaned it
			return removed, err
		}
	}
	return removed, nil
}
