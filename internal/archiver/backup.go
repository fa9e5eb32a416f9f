package archiver

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// BackupOptions describe one file backup.
type BackupOptions struct {
	Options
	Tags     []string
	Host     string // default: this machine's hostname
	ParentID string // snapshot to compare with; default: latest of the same host and paths
	Program  string // version string recorded in the snapshot
	// Start is called with the archiver once it exists (for progress).
	Start func(*Archiver)
	// Commit configures the commit step that saves the snapshot.
	Commit commit.Options
}

// Backup backs up paths into repo and saves the snapshot through the
// commit step (internal/commit). The repository index must be loaded.
// Unreadable entries do not fail the backup: they are returned and counted
// in the snapshot summary. A snapshot saved whose retention or commit
// hook failed (see commit.Step.Save) is returned with the error.
func Backup(ctx context.Context, repo *repository.Repository, paths []string, o BackupOptions) (*snapshot.Snapshot, []FileError, error) {
	start := time.Now()
	if err := CheckExcludes(o.Excludes); err != nil {
		return nil, nil, err
	}
	if err := snapshot.CheckTags(o.Tags); err != nil {
		return nil, nil, err
	}
	if err := snapshot.CheckHost(o.Host); err != nil {
		return nil, nil, err
	}
	abs := make([]string, len(paths))
	for i, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, nil, err
		}
		abs[i] = filepath.Clean(a)
		// "link/" names the directory a symbolic link leads to (POSIX
		// path resolution; tar, rsync and cp -r follow it): saved under
		// the link's name. Without the slash the link itself is saved.
		if abs[i] != "/" && namesDir(p) {
			// It must lead to a directory (POSIX: ENOTDIR otherwise),
			// checked before anything is written (found by a hostile
			// test: a dangling link/ made an empty snapshot, exit 0).
			fi, err := os.Stat(abs[i])
			if err != nil {
				return nil, nil, fmt.Errorf("backup path %s: %w", p, err)
			}
			if !fi.IsDir() {
				return nil, nil, fmt.Errorf("backup path %s: not a directory", p)
			}
			o.Follow = append(o.Follow, abs[i])
		}
	}
	slices.Sort(abs)
	abs = slices.Compact(abs)
	host := o.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	step, err := commit.Begin(ctx, repo, o.Commit)
	if err != nil {
		return nil, nil, err
	}
	parent, err := findParent(ctx, repo, o.ParentID, snapshot.Filter{Kind: snapshot.KindFiles, Host: host, Paths: abs}, o.Log)
	if err != nil {
		return nil, nil, err
	}
	opt := o.Options
	if parent != nil {
		opt.Parent = &parent.Tree
	}
	opt.Seed = repo.Key().ChunkerSeed()
	c := repo.Config().Chunker
	opt.Chunker.Min, opt.Chunker.Avg, opt.Chunker.Max = c.Min, c.Avg, c.Max
	a := New(repo, opt)
	if o.Start != nil {
		o.Start(a)
	}
	root, err := a.Snapshot(ctx, abs)
	if err != nil {
		return nil, a.Errors(), err
	}
	sn := &snapshot.Snapshot{
		Time:     start.UTC(),
		Kind:     snapshot.KindFiles,
		Paths:    abs,
		Hostname: host,
		Tags:     o.Tags,
		Tree:     root,
		Program:  o.Program,
		Summary:  a.Summary(start),
	}
	if u, err := user.Current(); err == nil {
		sn.Username = u.Username
	}
	if parent != nil {
		sn.Parent = &parent.ID
	}
	if _, err := step.Save(ctx, sn); err != nil {
		if sn.ID.IsNull() {
			return nil, a.Errors(), err
		}
		return sn, a.Errors(), err // saved, but its retention or the commit hook failed
	}
	return sn, a.Errors(), nil
}

// namesDir reports whether path p, as given, names a directory rather than
// whatever its last element is: it ends in a slash, "." or ".." (POSIX
// path resolution follows a symbolic link there). "." in a working
// directory reached through a link (cd link) was saved as the bare link
// (found by review).
func namesDir(p string) bool {
	return p == "" || p == "." || p == ".." || strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")
}

// findParent resolves the parent a user named, or else picks the newest
// readable snapshot of the same host and paths: the parent only spares
// reading unchanged files, so an unreadable snapshot costs time here, not
// correctness, and must not stop backups (it is logged).
func findParent(ctx context.Context, repo *repository.Repository, ref string, f snapshot.Filter, log *slog.Logger) (*snapshot.Snapshot, error) {
	list, unreadable, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, err
	}
	if ref != "" {
		sn, err := snapshot.Find(list, unreadable, ref, snapshot.Filter{})
		if err != nil {
			return nil, fmt.Errorf("parent: %w", err)
		}
		return sn, nil
	}
	if log != nil {
		for _, e := range unreadable {
			log.Warn("unreadable snapshot not considered as the parent; run 'nestguard verify'", "err", e)
		}
	}
	return snapshot.Newest(list, f), nil // nil: first backup of these paths
}
