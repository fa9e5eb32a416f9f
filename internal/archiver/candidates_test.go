package archiver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/candidates"
	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// TestParentShortcutsAvoidCandidatePacks: when a prune marked every pack
// of the parent snapshot as a deletion candidate, a backup of unchanged
// files does not take the parent's shortcuts: each file is read again
// (none counts as unmodified) and every blob and tree of the new snapshot,
// including the trees equal to the parent's, has a copy outside the
// marked packs.
func TestParentShortcutsAvoidCandidatePacks(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	for d := range 2 {
		dir := filepath.Join(src, fmt.Sprintf("d%d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 3 {
			b := make([]byte, 20_000+f*70_000)
			for i := range b {
				b[i] = byte(i*(f+3) + d)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", f)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, _, err := Backup(ctx, repo, []string{src}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	marked := repo.Index().Packs()
	now := time.Now()
	if err := candidates.Save(ctx, repo, &candidates.Record{Time: now, NotBefore: now.Add(24 * time.Hour), Packs: marked}); err != nil {
		t.Fatal(err)
	}

	r2 := repotest.Open(t, repo.Backend())
	second, _, err := Backup(ctx, r2, []string{src}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *second.Parent != first.ID {
		t.Fatalf("parent %s, want %s", second.Parent.Short(), first.ID.Short())
	}
	if s := second.Summary; s.FilesUnmodified != 0 || s.FilesChanged != 6 {
		t.Errorf("unmodified %d, changed %d: files whose blobs are only in marked packs must be read again", s.FilesUnmodified, s.FilesChanged)
	}
	if only := repotest.OnlyIn(t, r2, second.Tree, marked); len(only) > 0 {
		t.Errorf("the snapshot references what only marked packs hold: %v", only)
	}

	// Without records the shortcuts are back (and cost nothing more).
	unmarked := New(repotest.Open(t, repo.Backend()), Options{Parent: &second.Tree})
	if _, err := unmarked.Snapshot(ctx, []string{src}); err != nil {
		t.Fatal(err)
	}
	if n := unmarked.C.FilesUnmodified.Load(); n != 6 {
		t.Errorf("without candidates: %d files unmodified, want 6", n)
	}
}
