package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

func (a *app) backupCommand() *cobra.Command {
	var o backupOptions
	cmd := &cobra.Command{
		Use:   "backup PATH...",
		Short: "Back up files and directories into a new snapshot",
		Long: `Back up files and directories, with their contents and metadata: type,
permission bits with setuid, setgid and sticky, owner and group (ids and
names), mtime (restored) and ctime (to detect changes), symlink targets,
hard links, device numbers, FIFOs, sparse files (holes are not read, and are
restored as holes), empty directories, and extended attributes of every
namespace the process can read: user.*, security.* (SELinux labels, file
capabilities), trusted.* (as root), and POSIX access and default ACLs
(system.posix_acl_*). Not kept: atime, birth time, file flags (chattr),
and sockets' contents (a socket is recorded, not recreated).

Files unchanged since the previous snapshot of the same host and paths
(same size, mtime, ctime and inode) are not read again, so repeated backups
are fast and store only what changed. Several backups may write to one
repository at the same time.

Unreadable files are reported and skipped; the snapshot is still saved and
the exit code is 3. An extended attribute that cannot be read is reported
with its file and name, counted the same way, and left out.

A file is read through one descriptor, and its metadata are those of the
file read: one replaced (renamed over) since the directory was listed is
saved with its own metadata and attributes, never another's. A file
whose size, mtime or ctime changed during its read was written while it
was read (GNU tar's "file changed as we read it"): it is saved, reported
as "changed while it was read" and counted (files_changed_while_read in
the summary), and the exit code is 3, as its copy may mix states that
never existed together; the next backup reads it again. Every entry,
its extended attributes included, is read relative to the directory
listed, never through a symbolic link: a file or directory replaced by a
link (or by a FIFO) since the listing is reported as no longer what it
was, and not read; a directory exchanged since is saved as itself.

Paths are saved under the names given. A symbolic link on the way to one
(/lib/os-release where /lib leads to usr/lib) is saved as the directory it
leads to; a path that is a link is saved as the link, unless given with a
trailing slash, ".", or ".." (link/, .), which saves the directory it
leads to under the link's name, as tar and rsync do (link/ must lead to a
directory). With -x a directory on another file system is saved empty
(a mount point), its contents left out, unless it is itself a path given
(backup -x / /home). A time outside the years 0 to 9999 is saved as the
nearest one a snapshot holds, and the file reported.

Exit codes: 0 every file saved as it was read; 1 error (no snapshot
saved, unless the error says it was); 2 usage error; 3 snapshot saved,
but some files were unreadable (not in it) or changed while they were
read; 130 and 143 stopped by SIGINT or SIGTERM (no snapshot saved).`,
		Example: `  nestguard backup /etc /srv/app --tag nightly --exclude '*.tmp'
  nestguard backup --json /var/lib/app > summary.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			o.paths = paths
			return a.runBackup(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Tags, "tag", nil, "tag the snapshot (repeatable; UTF-8 text)")
	f.StringVar(&o.Host, "host", "", "record this host name instead of the machine's")
	f.StringArrayVarP(&o.Excludes, "exclude", "e", nil, "skip entries whose name or absolute path matches this glob (repeatable)")
	f.BoolVarP(&o.OneFileSystem, "one-file-system", "x", false, "do not cross file system boundaries: directories on another file system are saved empty (mount points)")
	f.StringVar(&o.ParentID, "parent", "", "compare with this snapshot instead of the latest of the same host and paths")
	o.stamp.addClassFlag(f)
	o.stamp.addTimeFlag(f)
	return cmd
}

// backupFailed is the error of a backup (file or PostgreSQL) that returned
// err: a snapshot saved whose retention could not be fully applied (sn
// set) says so itself; otherwise see interruptedBackup.
func backupFailed(ctx context.Context, repo *repository.Repository, sn *snapshot.Snapshot, err error) error {
	if sn != nil {
		return err
	}
	return interruptedBackup(ctx, repo, err)
}

// interruptedBackup is err, or when a signal stopped the backup, what it
// left: no snapshot, and the packs stored so far, which the next backup
// indexes (repository.IndexOrphanPacks) and reuses instead of storing
// their blobs again.
func interruptedBackup(ctx context.Context, repo *repository.Repository, err error) error {
	var in *interrupted
	if ctx.Err() == nil || !errors.As(context.Cause(ctx), &in) {
		return err
	}
	repo.WaitUploads()
	n, size := repo.Stats.Packs.Load(), repo.Stats.PackBytes.Load()
	if n == 0 {
		return fmt.Errorf("%w: no snapshot was saved, and nothing was stored yet", in)
	}
	packs := "packs"
	if n == 1 {
		packs = "pack"
	}
	return fmt.Errorf("%w: no snapshot was saved; the %d %s (%s) stored before the interruption stay in the repository, and the next backup reuses their data instead of storing it again (it still reads the files)",
		in, n, packs, progress.Bytes(size))
}

// backupOptions are what backup is asked to do: its arguments and flags.
type backupOptions struct {
	paths []string
	stamp stampOptions
	archiver.BackupOptions
}

// runBackup backs up o.paths into a new snapshot.
func (a *app) runBackup(ctx context.Context, o backupOptions) error {
	if err := archiver.CheckExcludes(o.Excludes); err != nil {
		return &usageError{fmt.Errorf("--exclude: %w", err)}
	}
	if err := snapshot.CheckTags(o.Tags); err != nil {
		return &usageError{fmt.Errorf("--tag: %w", err)}
	}
	if err := snapshot.CheckHost(o.Host); err != nil {
		return &usageError{fmt.Errorf("--host: %w", err)}
	}
	commit, err := a.stampCommit(o.stamp)
	if err != nil {
		return err
	}
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		o.Program = "nestguard " + version
		o.Log = a.log
		o.Commit = commit
		if o.Workers <= 0 {
			o.Workers = readerProcs(a.getenv)
		}
		var rep *progress.Reporter
		var arch *archiver.Archiver
		o.Start = func(ar *archiver.Archiver) {
			arch = ar
			rep = progress.Start(a.stderr, a.progressEnabled(), func() progress.Status {
				return progress.Status{Files: ar.C.Files.Load(), Bytes: ar.C.BytesRead.Load(), Errors: ar.C.Errors.Load(),
					Extra: fmt.Sprintf("%d unchanged", ar.C.FilesUnmodified.Load())}
			})
		}
		sn, ferrs, err := archiver.Backup(ctx, repo, o.paths, o.BackupOptions)
		if rep != nil {
			rep.Stop()
		}
		var changed []archiver.FileError
		if arch != nil {
			changed = arch.Changed()
		}
		for _, fe := range append(ferrs, changed...) {
			if !a.jsonOut {
				fmt.Fprintf(a.stderr, "warning: %s: %s\n", tree.Show(fe.Path), fe.Err)
			}
		}
		if err != nil {
			return backupFailed(ctx, repo, sn, err)
		}
		s := sn.Summary
		a.summaryMetrics(s)
		a.metric("files_changed_while_read", float64(s.ChangedWhileRead))
		if a.jsonOut {
			if err := a.printJSON(backupJSON{current(), sn.ID.String(), sn.ID.Short(), s, ferrs, changed, s.End.Sub(s.Start).Seconds()}); err != nil {
				return err
			}
		} else {
			a.printf("files: %d new, %d changed, %d unchanged; %d dirs\n", s.FilesNew, s.FilesChanged, s.FilesUnmodified, s.Dirs)
			a.printf("added %s (%s stored) of %s processed in %s\n", progress.Bytes(s.DataAdded), progress.Bytes(s.DataStored),
				progress.Bytes(s.TotalBytes), s.End.Sub(s.Start).Round(time.Millisecond))
			a.printf("snapshot %s saved\n", sn.ID.Short())
		}
		var partial []string
		if len(ferrs) > 0 {
			partial = append(partial, fmt.Sprintf("with %d read errors (listed above): what could not be read is not in it", len(ferrs)))
		}
		if n := len(changed); n == 1 {
			partial = append(partial, "1 file changed while it was read (named above): its copy may mix states that never existed together")
		} else if n > 1 {
			partial = append(partial, fmt.Sprintf("%d files changed while they were read (listed above): their copies may mix states that never existed together", n))
		}
		if len(partial) > 0 {
			return &partialError{fmt.Sprintf("snapshot %s saved, but %s", sn.ID.Short(), strings.Join(partial, "; and "))}
		}
		return nil
	})
}
