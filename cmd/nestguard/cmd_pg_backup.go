package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/restorer"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// pgBackupCommands: pg backup and pg restore.
func (a *app) pgBackupCommands() []*cobra.Command {
	return []*cobra.Command{monitor(a.pgBackupCommand()), monitor(a.pgRestoreCommand())}
}

func (a *app) pgBackupCommand() *cobra.Command {
	var o pgBackupOptions
	cmd := &cobra.Command{
		Use:   "backup --pgdata DIR --dsn DSN",
		Short: "Take an online base backup of a PostgreSQL cluster",
		Long: `Take a consistent base backup of a running PostgreSQL cluster while it
takes writes, using PostgreSQL's non-exclusive backup API: pg_backup_start,
a parallel copy of the data directory and every tablespace, pg_control last,
pg_backup_stop. backup_label and tablespace_map are stored exactly as the
server returned them.

The backup needs WAL archiving into the same repository
(archive_command = 'nestguard ... pg archive-wal %p', see 'pg archive-wal
--help'): it is complete, and its snapshot saved, only once every WAL
segment from its start to its stop is in the repository. If that takes
longer than --wal-timeout, no snapshot is saved and the missing segments
are named.

Relation files are cut in fixed blocks (--block-size, a multiple of the
8 KiB page), so the next backup stores only the blocks that changed: every
backup is a full restore point at the cost of an incremental one. Files
unchanged since the cluster's previous backup are not read at all.

With data checksums on (initdb --data-checksums), every page read is
verified; corrupt pages are reported by file and block, the backup is
still saved, and the exit code is 3.

The connection (--dsn, or the PG* environment variables) needs a role that
may run pg_backup_start and pg_backup_stop (superuser, or EXECUTE granted
on them, with pg_read_all_settings). --pgdata is the data directory as this
machine sees it; it must be the data directory of the server --dsn reaches,
not another cluster's nor a copy of this one (its system identifier,
timeline, path or device and inode, and latest checkpoint are compared with
the server's), or the backup is refused before anything is stored.`,
		Example: `  nestguard pg backup --pgdata /var/lib/postgresql/15/main --dsn "host=/var/run/postgresql user=postgres"
  nestguard pg backup --pgdata "$PGDATA" --tag nightly --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runPGBackup(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "pgdata", a.getenv("PGDATA"), "the cluster's data directory (env PGDATA; default: the server's data_directory)")
	bindEnv(f, "pgdata", "PGDATA")
	f.StringVar(&o.DSN, "dsn", "", `connection string or URL, e.g. "host=/var/run/postgresql user=postgres" (default: the PG* environment); never with a password: use ~/.pgpass, PGPASSFILE or PGPASSWORD`)
	f.StringArrayVar(&o.Tags, "tag", nil, "tag the snapshot (repeatable)")
	f.StringVar(&o.blockSize, "block-size", "", fmt.Sprintf("chunk size for relation files, a multiple of 8KiB (default %dKiB)", pg.DefaultBlockSize>>10))
	f.DurationVar(&o.WALTimeout, "wal-timeout", 5*time.Minute, "how long to wait for the backup's WAL to reach the repository")
	f.StringVar(&o.Host, "host", "", "record this host name instead of the machine's")
	o.stamp.addClassFlag(f)
	return cmd
}

func (a *app) pgRestoreCommand() *cobra.Command {
	var o pgRestoreOptions
	cmd := &cobra.Command{
		Use:   "restore --target DIR (--to-time TS | --to-lsn LSN | --to-xid XID | --to-name NAME | --to-latest | --standby)",
		Short: "Restore a PostgreSQL cluster to a point in time",
		Long: `Restore a PostgreSQL cluster as it was at a moment of the recoverable
window ('nestguard pg status' shows it), in one command:

  1. the recovery target is checked against the window and the WAL chain; a target
     outside it, or beyond a missing WAL segment, is refused before
     anything is written, naming the window or the segment;
  2. the newest base backup that ends before the target (for --to-xid and
     --to-name: before the transaction's end or the restore point in the
     WAL) is restored in parallel into --target (new or empty),
     tablespaces to their recorded directories or those given with
     --tablespace-map;
  3. recovery is configured: restore_command runs 'nestguard pg
     restore-wal' on this repository, the target goes into
     postgresql.auto.conf, and recovery.signal is created; then the
     data directory and tablespaces are synced to disk (syncfs; a failure
     fails the restore; --no-sync skips it, as pg_basebackup --no-sync);
  4. with --start, the server is started (pg_ctl, as the directory's
     owner), and the command waits until recovery reached the target and
     reports the point reached and how long restore and replay took.
     Meanwhile it keeps the next WAL segments in a spool that
     restore_command takes from without starting nestguard, and a
     promotion at a target is a fast one (paused there, then 'pg_ctl
     promote': no immediate end-of-recovery checkpoint before the server
     opens; PostgreSQL 14 and later).

Exactly one target: --to-time (RFC 3339, or "2006-01-02 15:04:05[.999999][-07]"
in local time without a zone), --to-lsn, --to-xid, --to-name (a restore point
made with pg_create_restore_point) or --to-latest (all archived WAL). The
transaction committed exactly at the target is included. Recovery to a time
stops at the first transaction that ended after it, so a time after the last
transaction archived is refused ('nestguard pg status' shows it).

--target-action says what the server does at the target: pause (PostgreSQL's
default: inspect, then SELECT pg_wal_replay_resume() to promote), promote
(open for writes on a new timeline), or shutdown. --to-latest always ends
promoted. --timeline picks the timeline to follow (latest, or a number);
latest is refused, naming both, when a timeline its history left committed
transactions after the one it would follow began (by the times in the WAL:
a promoted copy archiving into this repository while the original went
on). A drill's or
a test's copy should not archive into this repository at all:
--archive-mode off writes archive_mode = off into it.

--standby restores the newest base backup as a standby instead (as
pgBackRest's --type=standby): standby.signal, restore_command, and
recovery_target_timeline = 'latest', so that it follows the primary's
failovers; no target, no action. It replays the WAL as it is archived and
stays in recovery until promoted (pg_ctl promote). --primary-conninfo
makes it stream from the primary too (no password in it: a password file
on the standby). With --start the command first reads the base backup's
own WAL and runs restore_command once as the server will, then starts
the standby and returns once it replayed the last transaction archived,
leaving it running; a standby that replays nothing for a minute before
that is stopped, and the command fails. Give restore_command a key
file (--key-file): a password file is stretched on every call.

restore_command must read the repository without a secret on its command
line: give --password-file or --key-file (readable by the database's OS
user), or your own --restore-command. S3 credentials come from the server's
environment.`,
		Example: `  nestguard pg restore --target /srv/pg-restore --to-time "2024-05-01 13:59:00+02" --start
  nestguard pg restore --target /srv/pg-restore --to-latest --start --port 5433 --json
  nestguard pg restore --target /srv/r --to-name before_migration --target-action promote \
      --tablespace-map 16390=/srv/r-ts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.actionSet = cmd.Flag("target-action").Changed
			return a.runPGRestore(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.TargetDir, "target", "t", "", "directory to restore the data directory into (new or empty)")
	f.StringVar(&o.toTime, "to-time", "", "recover to this time (RFC 3339 or \"2006-01-02 15:04:05[.999999][-07]\")")
	f.StringVar(&o.toLSN, "to-lsn", "", "recover to this WAL location (e.g. 0/5000060)")
	f.StringVar(&o.toXID, "to-xid", "", "recover up to and including this transaction id")
	f.StringVar(&o.toName, "to-name", "", "recover to this restore point (pg_create_restore_point)")
	f.BoolVar(&o.toLatest, "to-latest", false, "recover all archived WAL")
	f.BoolVar(&o.Standby, "standby", false, "restore as a standby that replays the archive as it grows (standby.signal, timeline latest), instead of recovering to a target")
	f.StringVar(&o.PrimaryConninfo, "primary-conninfo", "", "with --standby: primary_conninfo, to stream from the primary too (no password: use a password file on the standby)")
	f.StringVar(&o.TargetAction, "target-action", pg.ActionPause, "at the target: pause, promote or shutdown")
	f.StringVar(&o.timeline, "timeline", "latest", "timeline to recover along: latest, current (the base backup's) or a number; a standby given one stays on it and follows no promotion")
	f.StringVar(&o.archiveMode, "archive-mode", "preserve", "archive_mode of the restored cluster: preserve (as backed up: once promoted it archives a new timeline where archive_command says) or off (a drill's or a test's copy)")
	f.BoolVar(&o.Start, "start", false, "start the server and wait until recovery reached the target (--standby: until it replayed the archive, then leave it running)")
	f.IntVar(&o.Port, "port", 0, "with --start: the port to run the restored server on (default: its configuration's)")
	f.StringVar(&o.BinDir, "bindir", "", "with --start: directory of pg_ctl and postgres (default: $PATH, then /usr/lib/postgresql/<newest>/bin)")
	f.DurationVar(&o.StartTimeout, "start-timeout", time.Hour, "with --start: how long recovery may take")
	f.StringVar(&o.LogFile, "log-file", "", "with --start: the server's log while recovering, outside the data directory (default: DIR.nestguard-restore.log next to --target)")
	f.StringVar(&o.From, "snapshot", "", "restore this base backup (snapshot id) instead of the newest one before the target (--standby: the newest)")
	f.BoolVar(&o.Overwrite, "overwrite", false, "restore into non-empty directories, replacing files")
	f.StringArrayVar(&o.tsMap, "tablespace-map", nil, "restore tablespace OID into DIR instead of its original location: OID=DIR (repeatable)")
	f.StringVar(&o.RestoreCommand, "restore-command", "", "restore_command to write instead of the one nestguard builds")
	f.IntVar(&o.Workers, "workers", restorer.DefaultWorkers, "packs read and written at once")
	f.BoolVar(&o.NoSync, "no-sync", false, "do not wait for the restored files to reach the disk before reporting or starting the server (as pg_basebackup --no-sync; a crash soon after can lose them)")
	flagAliases(cmd, map[string]string{"target-dir": "target", "from": "snapshot"})
	return cmd
}

// pgBackupOptions are what pg backup is asked to do: its flags.
type pgBackupOptions struct {
	pg.BackupOptions
	blockSize string // --block-size as given, "" for the default
	stamp     stampOptions
}

// runPGBackup takes a base backup of the cluster o names.
func (a *app) runPGBackup(ctx context.Context, o pgBackupOptions) error {
	if err := snapshot.CheckTags(o.Tags); err != nil {
		return &usageError{fmt.Errorf("--tag: %w", err)}
	}
	if err := snapshot.CheckHost(o.Host); err != nil {
		return &usageError{fmt.Errorf("--host: %w", err)}
	}
	if o.blockSize != "" {
		n, err := parseByteSize(o.blockSize)
		if err != nil {
			return &usageError{fmt.Errorf("--block-size: %w", err)}
		}
		o.BlockSize = n
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
		var (
			cur  atomic.Pointer[archiver.Archiver]
			done atomic.Int64 // bytes read by the finished archivers (data directory, tablespaces)
		)
		o.OnArchiver = func(ar *archiver.Archiver) {
			if old := cur.Swap(ar); old != nil {
				done.Add(old.C.BytesRead.Load())
			}
		}
		rep := progress.Start(a.stderr, a.progressEnabled(), func() progress.Status {
			ar := cur.Load()
			if ar == nil {
				return progress.Status{Extra: "starting backup"}
			}
			return progress.Status{Files: ar.C.Files.Load(), Bytes: done.Load() + ar.C.BytesRead.Load(), Errors: ar.C.Errors.Load(),
				Extra: fmt.Sprintf("%d unchanged", ar.C.FilesUnmodified.Load())}
		})
		sn, info, err := pg.Backup(ctx, repo, o.BackupOptions)
		rep.Stop()
		if err != nil {
			return backupFailed(ctx, repo, sn, err)
		}
		s := sn.Summary
		a.summaryMetrics(s)
		a.metric("database_bytes", float64(info.DatabaseSize))
		a.metric("corrupt_pages", float64(len(info.CorruptPages)))
		secs := s.End.Sub(s.Start).Seconds()
		if a.jsonOut {
			if err := a.printJSON(pgBackupJSON{current(), sn.ID.String(), sn.ID.Short(), s, info,
				secs, float64(s.BytesRead) / (1 << 20) / max(secs, 1e-3)}); err != nil {
				return err
			}
		} else {
			a.printf("base backup of cluster %d (PostgreSQL %d), timeline %d\n", info.SystemID, info.ServerVersion, info.Timeline)
			a.printf("  WAL %s (%s) to %s (%s), all archived\n", info.StartLSN, info.StartWAL, info.StopLSN, info.StopWAL)
			a.printf("  files: %d new, %d changed, %d unchanged; read %s of %s in %s (%s/s)\n", s.FilesNew, s.FilesChanged, s.FilesUnmodified,
				progress.Bytes(s.BytesRead), progress.Bytes(info.DatabaseSize), s.End.Sub(s.Start).Round(time.Millisecond),
				progress.Bytes(int64(float64(s.BytesRead)/max(secs, 1e-3))))
			a.printf("  added %s (%s stored)\n", progress.Bytes(s.DataAdded), progress.Bytes(s.DataStored))
			for _, tsp := range info.Tablespaces {
				a.printf("  tablespace %d at %s\n", tsp.OID, tsp.Location)
			}
			a.printf("snapshot %s saved\n", sn.ID.Short())
		}
		for _, cp := range info.CorruptPages {
			if !a.jsonOut {
				fmt.Fprintf(a.stderr, "warning: corrupt page: %s block %d: %s\n", cp.Path, cp.Block, cp.Error)
			}
		}
		if len(info.CorruptPages) > 0 {
			return &partialError{fmt.Sprintf("snapshot %s saved, but %d pages failed their checksum (listed above): the cluster has damaged data",
				sn.ID.Short(), len(info.CorruptPages))}
		}
		return nil
	})
}

// pgRestoreOptions are what pg restore is asked to do: its flags.
type pgRestoreOptions struct {
	pg.RestoreOptions
	toTime, toLSN, toXID, toName string
	toLatest                     bool
	timeline                     string
	archiveMode                  string
	tsMap                        []string // --tablespace-map OID=DIR
	actionSet                    bool     // --target-action was given
}

// runPGRestore restores a cluster to the recovery target o names.
func (a *app) runPGRestore(ctx context.Context, o pgRestoreOptions) error {
	if o.TargetDir == "" {
		return &usageError{errors.New("--target is required: the directory to restore the data directory into")}
	}
	if o.PrimaryConninfo != "" && !o.Standby {
		return &usageError{errors.New("--primary-conninfo is for --standby: a recovery to a target reads the archive only")}
	}
	if err := pg.CheckDSN(o.PrimaryConninfo); err != nil {
		return &usageError{fmt.Errorf("--primary-conninfo: %w", err)}
	}
	if o.Standby {
		if o.toTime != "" || o.toLSN != "" || o.toXID != "" || o.toName != "" || o.toLatest || o.actionSet {
			return &usageError{errors.New("--standby takes no recovery target nor --target-action: a standby replays the archive to its end, then waits for more, until promoted")}
		}
		o.toLatest = true // the newest base backup, and a chain to the archive's end
	}
	target, err := parseRestoreTarget(o.toTime, o.toLSN, o.toXID, o.toName, o.toLatest)
	if err != nil {
		return &usageError{err}
	}
	if err := pg.CheckTimeline(o.timeline); err != nil {
		return &usageError{fmt.Errorf("--timeline: %w", err)}
	}
	target.Timeline = o.timeline
	o.Target = target
	switch o.archiveMode {
	case "preserve":
	case "off":
		o.ArchiveOff = true
	default:
		return &usageError{fmt.Errorf("--archive-mode %q: want preserve or off", o.archiveMode)}
	}
	switch {
	case o.Standby:
		o.TargetAction = ""
	case o.Target.Latest && !o.actionSet:
		o.TargetAction = pg.ActionPromote
	}
	if o.TablespaceMap, err = parseTablespaceFlags(o.tsMap); err != nil {
		return &usageError{err}
	}
	if o.RestoreCommand == "" {
		// A fresh session binds the WAL spool to this restore: restore-wal
		// takes prefetched segments only from a spool filled for it.
		o.SpoolSession = rand.Text()
		o.PrefetchWAL = pg.DefaultPrefetch
		if o.RestoreCommand, err = a.restoreCommandLine(o.SpoolSession); err != nil {
			return &usageError{err}
		}
	}
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		o.Log = a.log
		var cur atomic.Pointer[restorer.Restorer]
		o.OnRestorer = func(r *restorer.Restorer) { cur.Store(r) }
		rep := progress.Start(a.stderr, a.progressEnabled(), func() progress.Status {
			r := cur.Load()
			if r == nil {
				return progress.Status{Extra: "checking the recovery window"}
			}
			return progress.Status{Files: r.C.Files.Load(), Bytes: r.C.BytesWritten.Load(), BytesTotal: r.C.BytesTotal.Load(), Errors: r.C.Errors.Load()}
		})
		res, err := pg.Restore(ctx, repo, o.RestoreOptions)
		rep.Stop()
		if err == nil {
			a.standbyWarnings(o)
		}
		if res != nil && !a.jsonOut {
			for _, d := range res.Damaged {
				fmt.Fprintf(a.stderr, "damaged: %s: %s\n", d.Path, d.Err)
			}
		}
		if err != nil {
			if res != nil && a.jsonOut {
				_ = a.printJSON(pgRestoreFailedJSON{current(), res, err.Error()})
			}
			return err
		}
		if a.jsonOut {
			return a.printJSON(pgRestoreJSON{current(), res})
		}
		a.printRestore(res)
		return nil
	})
}

func (a *app) printRestore(res *pg.RestoreResult) {
	b := res.Base
	a.printf("restored base backup %s (cluster %d, ended %s at %s) to %s: %d files, %s\n",
		res.Snapshot[:8], b.SystemID, fmtTime(b.StopTime), b.StopLSN, res.TargetDir, res.Files, progress.Bytes(res.Bytes))
	for oid, dir := range res.Tablespaces {
		a.printf("  tablespace %d in %s\n", oid, dir)
	}
	for _, k := range []string{"recovery_target_time", "recovery_target_lsn", "recovery_target_xid", "recovery_target_name",
		"recovery_target_timeline", "recovery_target_action", "archive_mode", "primary_conninfo"} {
		if v, ok := res.Settings[k]; ok {
			a.printf("  %s = '%s'\n", k, v)
		}
	}
	if res.Standby {
		a.printStandby(res)
		return
	}
	if !res.Started {
		a.printf("recovery is configured; start the server to replay WAL to the target:\n  pg_ctl -D %s start\n", res.TargetDir)
		a.printf("restore took %s\n", res.RestoreTime.Round(time.Millisecond))
		return
	}
	r := res.Recovery
	a.printf("server %s at the recovery target", r.State)
	if r.ReplayLSN != nil {
		a.printf(": replayed to %s", *r.ReplayLSN)
	}
	if r.LastCommit != nil {
		a.printf(", last transaction committed at %s", r.LastCommit.Local().Format("2006-01-02 15:04:05.000000 -07"))
	}
	if r.Timeline != 0 {
		a.printf(", now on timeline %d", r.Timeline)
	}
	a.printf("\n")
	if r.Message != "" {
		a.printf("  server: %s\n", r.Message)
	}
	if r.State != "shut down" {
		host := r.SocketDir
		if host == "" {
			host = "localhost"
		}
		a.printf("  connect with: psql -h %s -p %d\n", host, r.Port)
	}
	a.printf("time: restore %s, WAL replay %s, total %s (the measured recovery time)\n",
		res.RestoreTime.Round(time.Millisecond), res.ReplayTime.Round(time.Millisecond), res.TotalTime.Round(time.Millisecond))
}

// standbyWarnings says, on stderr whatever the output's form, what a
// standby restored as asked will do that its user may not expect.
func (a *app) standbyWarnings(o pgRestoreOptions) {
	if !o.Standby {
		return
	}
	if o.ArchiveOff {
		fmt.Fprintln(a.stderr, "warning: the standby has archive_mode = off (--archive-mode off): once promoted, it archives nothing")
	}
	if flag, _ := a.restoreCommandSecret(); flag == "--password-file" && o.SpoolSession != "" {
		fmt.Fprintln(a.stderr, "warning: restore_command unlocks the repository with a password file: it stretches the passphrase on every call, every few seconds while the standby waits for WAL; a key file (key add --generate-key-file, then --key-file) takes microseconds")
	}
}

// printStandby reports a restore as a standby (pg restore --standby).
func (a *app) printStandby(res *pg.RestoreResult) {
	if !res.Started {
		a.printf("standby configured (standby.signal); start it to replay the archive, and it stays in recovery until promoted:\n  pg_ctl -D %s start\n", res.TargetDir)
		a.printf("restore took %s\n", res.RestoreTime.Round(time.Millisecond))
		return
	}
	r := res.Recovery
	if r.ReplayLSN == nil {
		// hot_standby off: no connection to ask while it recovers.
		a.printf("standby started, in recovery (hot_standby is off: it takes no connections until promoted)\n")
		a.printf("  it replays WAL as it is archived; promote it with: pg_ctl -D %s promote\n", res.TargetDir)
		a.printf("time: restore %s, start %s, total %s\n",
			res.RestoreTime.Round(time.Millisecond), res.ReplayTime.Round(time.Millisecond), res.TotalTime.Round(time.Millisecond))
		return
	}
	a.printf("standby running, in recovery: replayed to %s", *r.ReplayLSN)
	if r.LastCommit != nil {
		a.printf(", last transaction committed at %s", r.LastCommit.Local().Format("2006-01-02 15:04:05.000000 -07"))
	}
	a.printf("\n")
	if r.Port != 0 {
		host := r.SocketDir
		if host == "" {
			host = "localhost"
		}
		a.printf("  connect with: psql -h %s -p %d (read only)\n", host, r.Port)
	}
	a.printf("  it replays WAL as it is archived; promote it with: pg_ctl -D %s promote\n", res.TargetDir)
	a.printf("time: restore %s, to the archive's end %s, total %s\n",
		res.RestoreTime.Round(time.Millisecond), res.ReplayTime.Round(time.Millisecond), res.TotalTime.Round(time.Millisecond))
}

// parseRestoreTarget builds the recovery target from the --to-* flags,
// exactly one of which must be given.
func parseRestoreTarget(toTime, toLSN, toXID, toName string, latest bool) (pg.Target, error) {
	var t pg.Target
	n := 0
	if toTime != "" {
		n++
		ts, err := parseTargetTime(toTime)
		if err != nil {
			return t, err
		}
		t.Time = &ts
	}
	if toLSN != "" {
		n++
		l, err := pgmeta.ParseLSN(toLSN)
		if err != nil {
			return t, fmt.Errorf("--to-lsn: %w", err)
		}
		t.LSN = &l
	}
	if toXID != "" {
		n++
		if _, err := strconv.ParseUint(toXID, 10, 64); err != nil {
			return t, fmt.Errorf("--to-xid %q: want a transaction id (a number)", toXID)
		}
		t.XID = toXID
	}
	if toName != "" {
		n++
		t.Name = toName
	}
	if latest {
		n++
		t.Latest = true
	}
	if n != 1 {
		return t, errors.New("give exactly one of --to-time, --to-lsn, --to-xid, --to-name and --to-latest")
	}
	return t, nil
}

// parseTargetTime reads RFC 3339 or PostgreSQL's "2006-01-02 15:04:05[.999999][-07]";
// without a zone the time is local. Fractional seconds are accepted after
// the seconds in every form.
func parseTargetTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05-07", "2006-01-02 15:04:05-0700",
		"2006-01-02 15:04:05 -07:00", "2006-01-02 15:04:05 -07", "2006-01-02 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--to-time %q: want RFC 3339 (2024-05-01T13:59:00+02:00) or \"2024-05-01 13:59:00[.123456][+02]\"", s)
}

// parseTablespaceFlags reads --tablespace-map OID=DIR values.
func parseTablespaceFlags(vals []string) (map[uint32]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := map[uint32]string{}
	for _, v := range vals {
		oid, dir, ok := strings.Cut(v, "=")
		n, err := strconv.ParseUint(oid, 10, 32)
		if !ok || err != nil || n == 0 || dir == "" {
			return nil, fmt.Errorf("--tablespace-map %q: want OID=DIRECTORY", v)
		}
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("--tablespace-map %q: the directory must be an absolute path", v)
		}
		m[uint32(n)] = filepath.Clean(dir)
	}
	return m, nil
}

// restoreCommandLine builds the restore_command PostgreSQL will run: this
// binary, this repository and its storage options, the WAL spool's
// session (if not ""), and the file that
// unlocks it — never a secret itself, since the command is stored in
// postgresql.auto.conf and visible in the process list.
func (a *app) restoreCommandLine(session string) (string, error) {
	exe, err := a.executable()
	if err != nil {
		return "", fmt.Errorf("locating the nestguard binary for restore_command: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", err
	}
	if err := a.needRepo(); err != nil {
		return "", err
	}
	repo := a.repo
	if !strings.Contains(repo, "://") {
		if repo, err = filepath.Abs(repo); err != nil {
			return "", err
		}
	}
	words := []string{exe, "--repo", repo}
	if a.fipsOnly {
		// A restore run under fips140=only keeps PostgreSQL's WAL fetches
		// under it too: sh runs the line, so the assignment applies to
		// nestguard alone.
		words = append([]string{"GODEBUG=fips140=only"}, words...)
	}
	if flag, file := a.restoreCommandSecret(); flag != "" {
		p, err := filepath.Abs(file)
		if err != nil {
			return "", err
		}
		words = append(words, flag, p)
	} else {
		return "", errors.New("restore_command needs to unlock the repository without a secret on its command line: give --key-file or --password-file (readable by the database's OS user), or write your own with --restore-command")
	}
	if a.s3Endpoint != "" {
		words = append(words, "--s3-endpoint", a.s3Endpoint)
	}
	if a.s3Region != "" {
		words = append(words, "--s3-region", a.s3Region)
	}
	if a.s3PathStyle {
		words = append(words, "--s3-path-style")
	}
	if a.s3Profile != "" {
		// A name, not a secret: the database's OS user reads the
		// profile from its own shared AWS files.
		words = append(words, "--s3-profile", a.s3Profile)
	}
	if a.caCert != "" {
		p, err := filepath.Abs(a.caCert)
		if err != nil {
			return "", err
		}
		words = append(words, "--ca-cert", p)
	}
	if a.insecureHTTP {
		words = append(words, "--insecure-http")
	}
	var b strings.Builder
	for _, w := range words {
		// PostgreSQL expands %-escapes before the shell sees the line.
		b.WriteString(strings.ReplaceAll(shellWord(w), "%", "%%"))
		b.WriteByte(' ')
	}
	b.WriteString("pg restore-wal ")
	if session != "" {
		b.WriteString("--spool-session " + shellWord(session) + " ")
	}
	b.WriteString("%f %p")
	return b.String(), nil
}

// shellWord quotes s for /bin/sh, which PostgreSQL runs restore_command with.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-:=+,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// parseByteSize reads a size in bytes, with an optional k/KiB/m/MiB suffix.
func parseByteSize(s string) (int, error) {
	s = strings.TrimSpace(s)
	mult := 1
	lower := strings.ToLower(s)
	for _, suf := range []struct {
		s string
		m int
	}{{"kib", 1 << 10}, {"kb", 1 << 10}, {"k", 1 << 10}, {"mib", 1 << 20}, {"mb", 1 << 20}, {"m", 1 << 20}} {
		if strings.HasSuffix(lower, suf.s) {
			mult = suf.m
			lower = strings.TrimSpace(strings.TrimSuffix(lower, suf.s))
			break
		}
	}
	n, err := strconv.Atoi(lower)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size: want bytes, or a number with k/KiB or m/MiB", s)
	}
	return n * mult, nil
}

// restoreCommandSecret returns the flag and file with which the
// restore_command a restore writes unlocks the repository: the one this
// run unlocked it with when that is a file (keyFileFirst), else the
// other file given; "" when neither is (only NESTGUARD_PASSWORD, which
// PostgreSQL's environment lacks).
func (a *app) restoreCommandSecret() (flag, file string) {
	keyFirst := a.keyFileFirst("key-file", a.keyFile, "password-file", a.passwordFile, "NESTGUARD_PASSWORD")
	switch {
	case a.keyFile != "" && (keyFirst || a.passwordFile == ""):
		return "--key-file", a.keyFile
	case a.passwordFile != "":
		return "--password-file", a.passwordFile
	}
	return "", ""
}
