package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/audit"
	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
)

// pgWALCommands: archive-wal, restore-wal, status.
func (a *app) pgWALCommands() []*cobra.Command {
	return []*cobra.Command{monitor(a.pgArchiveWALCommand()), a.pgRestoreWALCommand(), a.pgStatusCommand()}
}

// archiveWALOptions are what archive-wal is asked to do.
type archiveWALOptions struct {
	path, name string
	async      bool
	spoolDir   string
	timeout    time.Duration
	ahead      int
	parallel   int
	idle       time.Duration
	worker     bool // this process is the background worker
}

func (a *app) pgArchiveWALCommand() *cobra.Command {
	var o archiveWALOptions
	cmd := &cobra.Command{
		Use:   "archive-wal PATH",
		Short: "Archive one WAL file: PostgreSQL's archive_command",
		Long: `Store one WAL segment, history or backup history file in the repository
(compressed, encrypted, under its WAL file name). PostgreSQL runs it for
every finished segment once archiving is on, in postgresql.conf:

  archive_mode = on
  archive_command = 'nestguard --repo /srv/backup --key-file /etc/nestguard/wal.key pg archive-wal %p'

%p is the path of the file, relative to the data directory; its name is the
file name (or --name). The command runs as the database's OS user with the
server's environment, so give it the repository and what unlocks it in the
command line or the server's environment, never a passphrase itself: a key
file ('nestguard key add --generate-key-file F', unlocks in microseconds)
or --password-file (Argon2id: a few tenths of a second per segment).

Exit status follows PostgreSQL's contract: 0 only once the file is durably
stored; 1 otherwise, and PostgreSQL keeps the file and retries. Archiving a
file again with identical content succeeds (a retry after a crash); a
different file under an archived name fails loudly and is never stored:
that means two clusters share a repository, or a restored cluster did not
start a new timeline.

With --async the call only waits for an acknowledgement: one background
worker (started by the first call, exiting after --worker-idle without
work) archives the files PostgreSQL has queued (pg_wal/archive_status/
*.ready), up to --ahead at once, --parallel compressed at a time, with the
repository opened once, and leaves in the spool directory (--spool-dir,
default pg_wal/.nestguard-archive) a marker naming each file, its size,
its BLAKE3 digest and the identity of the file read (inode, times) once it
is durable in the repository and recorded in the audit trail. The call
exits 0 only on a marker for the very file it was given (the same
identity, or else the same size and digest), so the contract above holds;
it exits 1 with the worker's error, or after --timeout without an answer.
A file PostgreSQL did not queue is archived by the call itself.`,
		Example: `  # postgresql.conf
  archive_mode = on
  archive_command = 'nestguard --repo s3://bucket/pg --key-file /etc/nestguard/wal.key pg archive-wal %p'

  # asynchronous: a background worker archives ahead of PostgreSQL's calls
  archive_command = 'nestguard --repo /srv/backup --key-file /etc/nestguard/wal.key pg archive-wal --async %p'

  # check that it works (see also pg_stat_archiver):
  psql -c 'SELECT pg_switch_wal()'; nestguard pg status`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.path = args[0]
			return a.runPGArchiveWAL(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "store under this WAL file name (default: the base name of PATH)")
	f.BoolVar(&o.async, "async", false, "wait for a background worker's acknowledgement instead of archiving in this call (see above)")
	f.StringVar(&o.spoolDir, "spool-dir", "", "with --async: the directory of acknowledgements and the worker's lock (default: .nestguard-archive next to PATH)")
	f.DurationVar(&o.timeout, "timeout", pg.DefaultArchiveTimeout, "with --async: how long to wait for the acknowledgement")
	f.IntVar(&o.ahead, "ahead", pg.DefaultArchiveAhead, "with --async: files the worker takes from PostgreSQL's queue at once")
	f.IntVar(&o.parallel, "parallel", 2, "with --async: files the worker compresses and stores at a time")
	f.DurationVar(&o.idle, "worker-idle", pg.DefaultWorkerIdle, "with --async: how long the worker waits for more work before it exits")
	f.BoolVar(&o.worker, "async-worker", false, "internal: be the background worker")
	f.MarkHidden("async-worker")
	return cmd
}

// startArchiveWorker starts this program again, detached, as the
// background worker of the asynchronous mode; it outlives this call.
func (a *app) startArchiveWorker(string) error {
	exe, err := a.executable()
	if err != nil {
		return err
	}
	return detach(exec.Command(exe, append(append([]string(nil), a.args...), "--async-worker")...))
}

// detach starts c in a session of its own, with /dev/null as its
// streams: it never holds the server's log open, and outlives the call.
func detach(c *exec.Cmd) error {
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // not in PostgreSQL's process group
	c.Stdin, c.Stdout, c.Stderr = nil, nil, nil
	if err := c.Start(); err != nil {
		return err
	}
	return c.Process.Release()
}

// cleanTurn reports whether archiving WAL file name also removes stale
// temporary data: archive-wal runs for every segment and must stay cheap,
// so only the first segment of each 4 GiB of WAL (with 16 MiB segments:
// 24 hex digits ending in 00000000) does, after it is stored.
func cleanTurn(name string) bool {
	return len(name) == 24 && strings.HasSuffix(name, "00000000")
}

func (a *app) pgRestoreWALCommand() *cobra.Command {
	var o restoreWALOptions
	cmd := &cobra.Command{
		Use:   "restore-wal NAME DEST",
		Short: "Fetch one WAL file for recovery: PostgreSQL's restore_command",
		Long: `Write WAL file NAME from the repository to DEST. PostgreSQL runs it during
recovery ('nestguard pg restore' writes the setting for you):

  restore_command = 'nestguard --repo /srv/backup --key-file /etc/nestguard/wal.key pg restore-wal %f %p'

Exit status follows PostgreSQL's contract: 0 only once DEST is completely
written (under a temporary name, then renamed; not synced: after a crash
PostgreSQL asks again). A file that is not in the repository exits 1 with one
line: that is normal, PostgreSQL asks for files past the end of the archive
and for history files that never existed. A damaged file (it fails
authentication), or one that cannot be read (the repository out of reach),
exits 200 and DEST is not written: PostgreSQL then stops the recovery
(FATAL) instead of taking the file for the end of the archive, which would
end a recovery to the latest WAL there and promote a server without the
rest. A standby (standby.signal in the data directory) gets exit 1: its
server retries, and replays nothing past a segment it cannot read; but a
damaged history file exits 200 there too, since exit 1 would read as
"no such timeline" and leave the standby on the timeline its primary
left.

While PostgreSQL replays a segment, the next --prefetch segments are fetched
and verified in parallel by a background process into a spool directory
(pg_wal/.nestguard-spool, or --spool-dir), so that the next requests are a
rename. The spool holds at most --prefetch segments and removes itself at
the end of the archive. A segment found in the spool is served without
opening the repository, if the spool was filled for this restore: for
--spool-session ('nestguard pg restore' writes a fresh one, and fetches the
first segments while it restores the files), else for the running server.
Any other spool is emptied, never used.`,
		Example: `  restore_command = 'nestguard --repo /srv/backup --key-file /etc/nestguard/wal.key pg restore-wal %f %p'
  restore_command = 'nestguard --repo /srv/backup --key-file /etc/nestguard/wal.key pg restore-wal --prefetch 16 %f %p'`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name, o.dest = args[0], args[1]
			return a.runPGRestoreWAL(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Prefetch, "prefetch", pg.DefaultPrefetch, "segments to fetch ahead into the spool (0: none)")
	f.StringVar(&o.SpoolDir, "spool-dir", "", "directory for prefetched segments (default: .nestguard-spool next to DEST)")
	f.IntVar(&o.Parallel, "parallel", 4, "segments fetched at once")
	f.BoolVar(&o.wait, "prefetch-wait", false, "prefetch before exiting instead of in a background process")
	f.StringVar(&o.Session, "spool-session", "", "use only spooled segments prefetched for this session ('nestguard pg restore' writes one; default: for the running server)")
	f.StringVar(&o.background, "prefetch-background", "", "internal: prefetch these comma-separated names and exit")
	f.MarkHidden("prefetch-background")
	return cmd
}

// startPrefetch starts this program again, detached, to fetch names into
// the spool while PostgreSQL replays; it outlives this call.
func (a *app) startPrefetch(spool string, names []string) error {
	exe, err := a.executable()
	if err != nil {
		return err
	}
	args := append(append([]string(nil), a.args...), "--spool-dir", spool, "--prefetch-background", strings.Join(names, ","))
	return detach(exec.Command(exe, args...))
}

func (a *app) pgStatusCommand() *cobra.Command {
	var keepPITR string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show base backups, the archived WAL, gaps, the recoverable window and the RPO",
		Long: `Show what point-in-time recovery can do with this repository:

  - the archived WAL per timeline, as runs of consecutive segments;
  - gaps: segments missing between archived ones (named by the first and
    last missing segment): recovery cannot cross them;
  - the recoverable windows, one per timeline: from the end of a base
    backup to the last transaction (commit or abort) in the WAL reachable
    from it without a gap, following timeline history. Recovery to a time
    stops at the first transaction after it, so time targets must be
    before that last transaction; the window's end is as fresh as the
    archiving;
  - the RPO: the age of the newest archived segment, the most committed
    work a disaster now could lose (plus what the server has not archived);
  - the base backups: start and stop LSN and time, database size and the
    bytes each added to the repository.

'nestguard pg restore' refuses a target outside the window before writing
anything. With --keep-pitr D, also what the window becomes once
'nestguard forget --keep-pitr D' and 'nestguard prune' removed the WAL no
kept base backup needs: the base backup the window starts at (the newest
that ended D ago or earlier), the older ones that keep only their own WAL
(archive-only), and how much WAL goes. With --json the same as one JSON
object.

The window comes from the list of WAL objects: a listed segment counts as
archived. Only history files and the last segments of each window are
read (a damaged one is named among the problems); 'nestguard verify
--read-data' reads every WAL object and names each damaged one.`,
		Example: `  nestguard pg status
  nestguard pg status --keep-pitr 35d
  nestguard pg status --json | jq .rpo_seconds`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runPGStatus(cmd.Context(), keepPITR)
		},
	}
	cmd.Flags().StringVar(&keepPITR, "keep-pitr", "", "also show the window after WAL expiry with this window: "+keepPITRHelp)
	return cmd
}

func (a *app) printStatus(s *pg.StatusReport) {
	if a.quiet {
		return
	}
	out := a.stdout
	fmt.Fprintf(out, "WAL archive: %d files, %s stored, %s segments\n", s.WALFiles, progress.Bytes(s.WALStored), progress.Bytes(s.SegmentSize))
	if s.NewestWALArchived != nil {
		fmt.Fprintf(out, "Newest WAL:  %s, archived %s (RPO %s)\n", s.NewestWAL, fmtTime(*s.NewestWALArchived),
			(time.Duration(*s.RPOSeconds) * time.Second).Round(time.Second))
	} else {
		fmt.Fprintln(out, "Newest WAL:  none archived: set archive_command (see 'nestguard pg archive-wal --help')")
	}

	fmt.Fprintln(out, "\nTimelines:")
	tw := newTable(out, 0, 0)
	fmt.Fprintln(tw, "  TL\tSEGMENTS\tFIRST\tLAST\tRUNS\tBRANCHED FROM")
	for _, t := range s.Timelines {
		first, last := "-", "-"
		if n := len(t.Ranges); n > 0 {
			first, last = t.Ranges[0].First, t.Ranges[n-1].Last
		}
		from := ""
		if n := len(t.Parents); n > 0 {
			p := t.Parents[n-1]
			from = fmt.Sprintf("timeline %d at %s", p.TLI, p.SwitchPoint)
		}
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%d\t%s\n", t.TLI, t.Segments, first, last, len(t.Ranges), from)
	}
	tw.Flush()

	if len(s.Gaps) > 0 {
		fmt.Fprintln(out, "\nGaps (missing WAL):")
		for _, g := range s.Gaps {
			if g.Count == 1 {
				fmt.Fprintf(out, "  timeline %d: %s missing\n", g.TLI, g.First)
			} else {
				fmt.Fprintf(out, "  timeline %d: %s to %s missing (%d segments)\n", g.TLI, g.First, g.Last, g.Count)
			}
		}
	}

	if len(s.WALExpiry) > 0 {
		fmt.Fprintln(out, "\nWAL expiry (prune removed WAL before these on purpose, none after):")
		for _, e := range s.WALExpiry {
			fmt.Fprintf(out, "  system %d: before %s\n", e.SystemID, e.From)
		}
	}

	fmt.Fprintln(out, "\nRecoverable window:")
	printWindows(out, s.Windows, "  ")

	fmt.Fprintln(out, "\nBase backups:")
	if len(s.BaseBackups) == 0 {
		fmt.Fprintln(out, "  none")
	} else {
		tw = newTable(out, 0, 0)
		fmt.Fprintln(tw, "  ID\tTL\tSTART\tSTOP\tSTART LSN\tSTOP LSN\tSIZE\tSTORED\tNOTE")
		for _, b := range s.BaseBackups {
			note := ""
			switch {
			case b.MissingWAL != "":
				note = "WAL missing: " + b.MissingWAL
			case b.CorruptPages > 0:
				note = fmt.Sprintf("%d corrupt pages", b.CorruptPages)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.ShortID, b.TLI, fmtTime(b.StartTime), fmtTime(b.StopTime),
				b.StartLSN, b.StopLSN, progress.Bytes(b.DatabaseSize), progress.Bytes(b.StoredSize), note)
		}
		tw.Flush()
	}
	for _, p := range s.Problems {
		fmt.Fprintf(a.stderr, "warning: %s\n", p)
	}
}

// runPGStatus prints what point-in-time recovery can do, and with
// keepPITR what it would be after WAL expiry with that window.
func (a *app) runPGStatus(ctx context.Context, keepPITR string) error {
	keep, err := parseKeepPITR(keepPITR)
	if err != nil {
		return err
	}
	return a.withRepo(ctx, false, func(repo *repository.Repository) error {
		st, err := pg.Status(ctx, repo)
		if err != nil {
			return err
		}
		var after *pitrPreview
		if !keep.Zero() {
			if after, err = a.previewPITR(ctx, repo, nil, keep); err != nil {
				return err
			}
		}
		if a.jsonOut {
			return a.printJSON(pgStatusJSON{current(), st, after})
		}
		a.printStatus(st)
		if after != nil && !a.quiet {
			printPITRPreview(a.stdout, after, fmt.Sprintf("with --keep-pitr %s (after 'forget --keep-pitr %s' and 'prune')", keep, keep))
		}
		return nil
	})
}

// restoreWALOptions are what restore-wal is asked to do.
type restoreWALOptions struct {
	pg.RestoreWALOptions
	name, dest string
	wait       bool   // prefetch before exiting
	background string // the names a detached prefetch fetches
}

// recoveryAbortError is a restore-wal failure that must stop PostgreSQL's
// recovery rather than end it: exitRecoveryAbort.
type recoveryAbortError struct{ err error }

func (e *recoveryAbortError) Error() string { return e.err.Error() }
func (e *recoveryAbortError) Unwrap() error { return e.err }

// runPGRestoreWAL writes WAL file o.name to o.dest. A file the repository
// does not hold is an error (exit 1: the end of the archive, for
// PostgreSQL); any other failure of a recovery that is not a standby's
// (whose server retries, and ends no recovery on a failure) is a
// recoveryAbortError: the file may hold WAL that recovery must not go
// without. On a standby too, a damaged history file is one: exit 1 for
// it reads as "no such timeline", and the standby stays on the timeline
// its primary left, silently (hostile test; a segment it cannot read it
// asks for again, and replays nothing past it meanwhile).
func (a *app) runPGRestoreWAL(ctx context.Context, o restoreWALOptions) error {
	err := a.pgRestoreWAL(ctx, o)
	if err == nil || errors.Is(err, pg.ErrNotArchived) || ctx.Err() != nil || o.background != "" {
		return err
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return err
	}
	if standby(o.dest) && !(pgmeta.IsHistory(o.name) && errors.Is(err, repository.ErrObjectCorrupted)) {
		return err
	}
	return &recoveryAbortError{err}
}

// standby reports whether the server restore_command writes dest for
// (dest is pg_wal/RECOVERYXLOG in its data directory, relative to it as
// PostgreSQL passes %p) runs as a standby: standby.signal in its data
// directory.
func standby(dest string) bool {
	_, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(dest)), "standby.signal"))
	return err == nil
}

// pgRestoreWAL is runPGRestoreWAL's work.
func (a *app) pgRestoreWAL(ctx context.Context, o restoreWALOptions) error {
	name, dest := o.name, o.dest
	if o.Prefetch < 0 || o.Prefetch > 256 {
		return &usageError{fmt.Errorf("--prefetch %d: want 0 to 256 segments", o.Prefetch)}
	}
	if o.background == "" && !o.wait {
		// A segment already prefetched for this restore: no repository
		// to open (and nothing read from it to record in its audit log;
		// the prefetch that fetched the segment is recorded).
		o.Log, o.Background = a.log, a.startPrefetch
		ok, err := pg.TakeSpooled(name, dest, o.RestoreWALOptions)
		if err != nil {
			a.log.Warn("prefetched WAL unusable, fetching it again", "file", name, "err", err)
		}
		if ok {
			return nil
		}
	}
	return a.withRepo(ctx, false, func(repo *repository.Repository) error {
		o.Log = a.log
		if o.background != "" {
			// The detached helper a previous call started.
			ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
			defer cancel()
			if o.SpoolDir == "" {
				o.SpoolDir = pg.DefaultSpoolDir(dest)
			}
			_, err := pg.PrefetchWAL(ctx, repo, o.SpoolDir, pg.SpoolIdentity(o.Session, dest), strings.Split(o.background, ","), o.Parallel, a.log)
			return err
		}
		if !o.wait {
			o.Background = a.startPrefetch
		}
		// A missing file (the normal end of recovery) is one line on
		// stderr, as every error is.
		return pg.RestoreWAL(ctx, repo, name, dest, o.RestoreWALOptions)
	})
}

// runPGArchiveWAL stores WAL file o.path under o.name (default: its base
// name): itself, or with --async through the background worker.
func (a *app) runPGArchiveWAL(ctx context.Context, o archiveWALOptions) error {
	if o.name == "" {
		o.name = filepath.Base(o.path)
	}
	if o.ahead < 1 || o.ahead > 1024 || o.parallel < 1 || o.parallel > 64 {
		return &usageError{fmt.Errorf("--ahead %d, --parallel %d: want 1 to 1024 files ahead and 1 to 64 at a time", o.ahead, o.parallel)}
	}
	if o.worker {
		return a.runArchiveWorker(ctx, o)
	}
	// One file, then exit: collecting garbage only costs latency
	// that PostgreSQL waits on. The soft limit still bounds memory
	// (segments may be up to 1 GiB).
	if a.setGCPercent != nil && a.setMemoryLimit != nil {
		a.setGCPercent(-1)
		a.setMemoryLimit(512 << 20)
	}
	if o.async {
		res, err := pg.ArchiveWALAsync(ctx, o.path, o.name, pg.AsyncOptions{SpoolDir: o.spoolDir, Timeout: o.timeout,
			StartWorker: a.startArchiveWorker, Log: a.log})
		if !errors.Is(err, pg.ErrNotQueued) {
			if err == nil {
				a.metric("bytes", float64(res.Size))
				a.log.Info("archived WAL", "file", o.name, "bytes", res.Size, "async", true, "started_worker", res.StartedWorker,
					"waited_ms", res.Waited.Milliseconds())
			}
			return err
		}
		a.log.Info("not in PostgreSQL's archive queue: archiving it in this call", "file", o.name)
	}
	began := time.Now()
	return a.withRepo(ctx, false, func(repo *repository.Repository) error {
		opened := time.Since(began)
		res, err := pg.ArchiveWAL(ctx, repo, o.path, o.name)
		if err != nil {
			return err
		}
		if cleanTurn(o.name) {
			repo.CleanStaleTemp(ctx)
		}
		a.metric("bytes", float64(res.Size))
		a.log.Info("archived WAL", "file", o.name, "bytes", res.Size, "already_archived", res.AlreadyArchived,
			"open_ms", opened.Milliseconds(), "store_ms", res.Duration.Milliseconds(), "total_ms", time.Since(began).Milliseconds())
		return nil
	})
}

// runArchiveWorker is the background worker of --async: it archives what
// PostgreSQL queued beside o.path until idle. A failure to run at all is
// left in the spool for the waiting calls.
func (a *app) runArchiveWorker(ctx context.Context, o archiveWALOptions) error {
	if a.audit != nil {
		// The worker's audit items are the files it archived (spoolAudit),
		// none of its own: a worker that found nothing to do (another one
		// had the spool's lock, or the files were done) added an item for
		// itself, a call that PostgreSQL never made.
		a.audit.spooled = true
	}
	spool := pg.ArchiveSpool(o.path, o.spoolDir)
	var bytes int64 // archived by this worker
	err := a.withRepo(ctx, false, func(repo *repository.Repository) error {
		// Each file in hand holds its object's buffer (the size of the
		// segment at most) until stored: below that, the collector would
		// run for every segment.
		if _, set := a.lookupEnv("GOMEMLIMIT"); !set && a.setMemoryLimit != nil {
			a.setMemoryLimit(pipelineMemory + int64(o.parallel)*48<<20)
		}
		st, err := pg.RunArchiveWorker(ctx, repo, pg.WorkerOptions{WALDir: filepath.Dir(o.path), SpoolDir: spool,
			Ahead: o.ahead, Parallel: o.parallel, Idle: o.idle, Log: a.log,
			Record: func(ctx context.Context, outs []pg.WorkerOutcome) error {
				for _, out := range outs {
					if out.Err == nil {
						bytes += out.Size
						if cleanTurn(out.Name) {
							repo.CleanStaleTemp(ctx)
						}
					}
				}
				a.metric("bytes", float64(bytes))
				return a.spoolAudit(ctx, archivedItems(outs))
			}})
		a.log.Info("background WAL archiver done", "archived", st.Archived, "failed", st.Failed)
		return err
	})
	if err != nil && ctx.Err() == nil {
		if werr := pg.WriteWorkerError(spool, err); werr != nil {
			a.log.Warn("leaving the worker's error in the spool", "err", werr)
		}
	}
	return err
}

// archivedItems are the audit items of the files a worker archived: one
// each, as a call archiving it would have left.
func archivedItems(outs []pg.WorkerOutcome) []audit.BatchItem {
	items := make([]audit.BatchItem, 0, len(outs))
	for _, out := range outs {
		it := audit.BatchItem{Time: out.Started.UTC(), Arg: out.Path + " --async", Outcome: audit.Success}
		if out.Err != nil {
			it.Outcome, it.Message = audit.Failed, out.Err.Error()
		}
		items = append(items, it)
	}
	return items
}
