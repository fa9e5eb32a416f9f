package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/restorer"
	"github.com/nestguard/nestguard/internal/tree"
)

func (a *app) restoreCommand() *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT --target DIR",
		Short: "Restore a snapshot into a directory",
		Long: `Restore a snapshot (an id prefix, or "latest") into --target, which must be
empty unless --overwrite is given. Paths are recreated below the target as
they were backed up: /etc/hosts restores to TARGET/etc/hosts.

--include takes a path of the snapshot, byte for byte as the shell passes
it (a name that is not UTF-8, shown by 'ls' as "/data/Stra\xdfe.txt", is
$'/data/Stra\xdfe.txt' in bash); with a trailing slash ("/etc/nginx/") it
names a directory, as it does to the shell. An include that names nothing
in the snapshot is an error, before anything is written. Sockets are not
recreated (the program that listens on one makes it); the summary counts
them.

Every block read is authenticated and checked against its id. A file that
cannot be restored completely is not left half-written: it is removed and
named, the others are restored, and the exit code is 3. A storage that
does not answer (an S3 store down, or throttling until the retries give
up) is not damage: the restore stops there, the files being written are
removed, those restored complete stay, and the exit code is 1; run it
again when the store answers. The summary counts
what was restored (files complete, their bytes), against what the snapshot
holds when less was. Owners are restored when run as root (an
unprivileged restore leaves the files its user's). An owner, mode, time or
extended attribute that cannot be set (trusted.* or security.capability
without root, an owner a user namespace does not map, a file system
without attributes) is named with its file, which stays restored, and the
exit code is 3. A restored
entry's user and trusted attributes and POSIX ACLs are the snapshot's, no
more: an ACL inherited from a target with a default ACL, or an overwritten
directory's own, is removed (security.* labels the system gives stay).

Nothing is written through a symlink already in the target: with
--overwrite, a symlink where the snapshot has a file or directory is
replaced by it, as is any other entry of another type (the snapshot's tree
wins), except a directory where the snapshot has something else: that is
reported, since a restore never removes a directory's contents.

The restore ends by syncing the target's file system (syncfs), so that a
restore reported done survives a crash or power cut right after; if that
sync fails the restore fails, naming the target. --no-sync skips it (as
pg_basebackup --no-sync).`,
		Example: `  nestguard restore latest --target /srv/restore
  nestguard restore 4f2a9c1e --target /tmp/r --include /etc/nginx`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.snapshot = args[0]
			return a.runRestore(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Target, "target", "t", "", "directory to restore into")
	f.StringArrayVarP(&o.Include, "include", "i", nil, "restore only this path of the snapshot and what is below it (repeatable)")
	f.BoolVar(&o.Overwrite, "overwrite", false, "restore into a non-empty target, replacing files of the same name")
	f.IntVar(&o.Workers, "workers", restorer.DefaultWorkers, "packs read and written at once")
	f.BoolVar(&o.NoSync, "no-sync", false, "do not wait for the restored files to reach the disk (faster; a crash soon after can lose them)")
	return cmd
}

// restoreOptions are what restore is asked to do: its argument and flags.
type restoreOptions struct {
	snapshot string
	restorer.Options
}

// runRestore restores o.snapshot.
func (a *app) runRestore(ctx context.Context, o restoreOptions) error {
	if o.Target == "" {
		return &usageError{fmt.Errorf("--target is required")}
	}
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		found, err := findSnapshots(ctx, repo, o.snapshot)
		if err != nil {
			return err
		}
		sn := found[0]
		o.Log = a.log
		// The sync at the end then finds most of the data on its way to
		// disk (docs/benchmarks.md, "A second machine"), and the page
		// cache is not filled with what was written ("Past the page
		// cache").
		o.Writeback = !o.NoSync
		o.DropBehind = o.Writeback
		res := restorer.New(repo, o.Options)
		rep := progress.Start(a.stderr, a.progressEnabled(), func() progress.Status {
			return progress.Status{Files: res.C.Files.Load(), Bytes: res.C.BytesWritten.Load(), BytesTotal: res.C.BytesTotal.Load(), Errors: res.C.Errors.Load()}
		})
		err = res.Restore(ctx, sn.Tree)
		rep.Stop()
		if nm := (*restorer.NoMatchError)(nil); errors.As(err, &nm) {
			return fmt.Errorf("%w: nothing was restored; snapshot %s holds %s (see 'nestguard ls %s')",
				err, sn.ID.Short(), showPaths(sn.Paths), sn.ID.Short())
		}
		c := &res.C
		var se *restorer.SyncError
		switch {
		case err == nil || errors.As(err, &se):
		case c.Files.Load() == 0 && c.Dirs.Load() > 0:
			// Not "0 of the 0 files": the snapshot holds files, none
			// of which the restore reached.
			fmt.Fprintf(a.stderr, "restore stopped before it reached a file (%d directories created); the rest of the snapshot was not restored\n", c.Dirs.Load())
		case c.Files.Load() > 0:
			fmt.Fprintf(a.stderr, "restore stopped: %d of the %d files found so far restored (%s of %s); the rest of the snapshot was not\n",
				c.Restored.Load(), c.Files.Load(), progress.Bytes(c.BytesRestored.Load()), progress.Bytes(c.BytesTotal.Load()))
		}
		if ste := (*restorer.StorageError)(nil); errors.As(err, &ste) {
			// Exit 1: a failure, not a partial restore (3) of damaged files.
			switch {
			case c.Files.Load()+c.Dirs.Load() == 0:
				return fmt.Errorf("%w; nothing was restored", err)
			case c.Restored.Load() == 0:
				return fmt.Errorf("%w; no file was restored", err)
			}
			return fmt.Errorf("%w; to finish, restore into an empty target again, or into this one with --overwrite", err)
		}
		if err != nil {
			return err
		}
		errs := res.Errors()
		a.metric("files", float64(c.Restored.Load()))
		a.metric("bytes", float64(c.BytesRestored.Load()))
		a.metric("errors", float64(len(errs)))
		if a.jsonOut {
			target, targetBytes := tree.ForJSON(o.Target)
			if err := a.printJSON(restoreJSON{current(), sn.ID.String(), target, targetBytes,
				c.Restored.Load(), c.Files.Load(), c.Dirs.Load(), c.BytesRestored.Load(), c.BytesTotal.Load(), c.Sockets.Load(), errs}); err != nil {
				return err
			}
		} else {
			for _, e := range errs {
				fmt.Fprintf(a.stderr, "error: %s: %s\n", tree.Show(e.Path), e.Err)
			}
			if c.Restored.Load() == c.Files.Load() {
				a.printf("restored snapshot %s to %s: %d files, %d dirs, %s\n", sn.ID.Short(), tree.Show(o.Target),
					c.Restored.Load(), c.Dirs.Load(), progress.Bytes(c.BytesRestored.Load()))
			} else {
				a.printf("restored snapshot %s to %s in part: %d of %d files, %s of %s, %d dirs\n", sn.ID.Short(), tree.Show(o.Target),
					c.Restored.Load(), c.Files.Load(), progress.Bytes(c.BytesRestored.Load()), progress.Bytes(c.BytesTotal.Load()), c.Dirs.Load())
			}
			if n := c.Sockets.Load(); n > 0 {
				a.printf("%d sockets not recreated: a socket is made by the program that listens on it\n", n)
			}
		}
		if len(errs) > 0 {
			msg := fmt.Sprintf("%d errors (listed above): %d of %d files restored complete, the others are not in the target",
				len(errs), c.Restored.Load(), c.Files.Load())
			if res.NotIndexed() {
				msg += "; " + restorer.RepairIndexHint
			}
			return &partialError{msg}
		}
		return nil
	})
}
