package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/checker"
	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/tree"
)

func (a *app) verifyCommand() *cobra.Command {
	var readData string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check that every snapshot can be restored",
		Long: `Check that everything a restore of each snapshot reads is there: every
index and snapshot object, and every legal hold record (one that does not
read blocks every forget: restore it from a copy of the storage, never
delete it), reads and authenticates, every tree and data blob
a snapshot references is indexed and its pack exists, large enough for
the blobs the index places in it (a pack cut short only in its header,
which a restore does not read, or with bytes appended, is found by
--read-data, which checks each pack's hash), and for a PostgreSQL base backup its pg_control blob is indexed and every
WAL segment from its start to its stop is stored.

Without --read-data no pack or WAL object is read (WAL objects are only
listed). With --read-data, also read back every pack, or with --read-data
PERCENT a random PERCENT of them, check its hash, and decrypt and hash
every blob in it ('--read-data 5%' and '--read-data=5%' are the same);
and read back every archived WAL object (the same PERCENT of them):
segments, partial segments, timeline and backup history files, inside a
base backup's span, after it (point-in-time recovery replays them) or
with no base backup at all, each authenticated, decompressed and, for a
segment, checked whole, as 'pg restore-wal' reads it for PostgreSQL.
With or without --read-data, the archived WAL is also checked as a
whole: a WAL segment missing on the path recovery to the latest takes
from the newest base backup of a database system, before a later segment
of it stored over a minute ago (recovery stops there), and WAL of a
timeline whose history file is missing are damage. Damage is reported by
snapshot and file, and by WAL object. Exit code 1 when anything is wrong.

Two backups of the same new data running at once both store it, so a
blob can sit in two packs. When one copy is damaged or missing, restores
read the other (with a warning naming the damaged pack): verify still
reports the damaged pack (exit 1: damage is there, and the blob has one
copy fewer than before) and says which pack the blob still reads from,
but does not report a snapshot damaged that restores complete.

A storage that does not answer is not damage. An S3 store that is down,
or throttles (503 SlowDown) until the retries give up, leaves the objects
it did not answer for "not read": they are named, nothing is reported
damaged for them, the snapshots that need them are reported as not
checked whole, and verify exits 1 saying so: run it again when the store
answers. A local directory is read without retries. There a read error
(EIO: the disk could not read the data) is reported as damage: waiting
does not bring back a sector the disk lost. (A network file system
mounted soft turns an outage into EIO: mount it hard, so that reads wait
for the server.)

verify takes no lock and may run while backups do: what they have not
finished is not reported as damage.`,
		Example: `  nestguard verify
  nestguard verify --read-data
  nestguard verify --read-data 5%   # a random 5% of packs and of WAL objects, e.g. daily`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt, err := readDataOptions(cmd, readData, args)
			if err != nil {
				return err
			}
			return a.runVerify(cmd.Context(), opt)
		},
	}
	cmd.Flags().StringVar(&readData, "read-data", "", "also read back the data: all packs and WAL objects, or a random `PERCENT` of each (default: none)")
	cmd.Flags().Lookup("read-data").NoOptDefVal = readAll
	return cmd
}

// readAll is --read-data without a value.
const readAll = "100%"

// readDataOptions turns --read-data into checker options. The flag's value
// is optional, so pflag reads '--read-data 5%' as the flag without a value
// and an argument 5%; verify takes no other argument, so a lone argument
// that follows a bare --read-data is its percentage.
func readDataOptions(cmd *cobra.Command, readData string, args []string) (checker.Options, error) {
	var opt checker.Options
	if len(args) > 0 {
		if !cmd.Flags().Changed("read-data") || readData != readAll {
			return opt, &usageError{fmt.Errorf("verify takes no argument %q: for a share of the packs and WAL objects, give --read-data %s", args[0], args[0])}
		}
		readData = args[0]
	}
	if !cmd.Flags().Changed("read-data") {
		return opt, nil
	}
	pct, err := parsePercent(readData)
	if err != nil {
		return opt, &usageError{err}
	}
	opt.ReadData, opt.Percent = true, pct
	return opt, nil
}

func parsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || v <= 0 || v > 100 {
		return 0, fmt.Errorf("--read-data: %q is not a percentage above 0 and at most 100 (leave --read-data out to read no data)", s)
	}
	return v, nil
}

// runVerify checks the repository as opt says.
func (a *app) runVerify(ctx context.Context, opt checker.Options) error {
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		// WAL objects are read back as restore-wal reads them for
		// PostgreSQL: verify passes what recovery would replay.
		opt.ReadWAL = func(ctx context.Context, name string, bufs *hugemem.Pool) (int, error) {
			return pg.ReadWAL(ctx, repo, name, bufs)
		}
		opt.ArchiveDamage = func(ctx context.Context) ([]checker.Problem, error) {
			st, err := pg.Status(ctx, repo)
			if err != nil {
				return nil, err
			}
			ds, err := st.ArchiveDamage(ctx)
			var ps []checker.Problem
			for _, d := range ds {
				ps = append(ps, checker.Problem{Object: d.Object, Error: d.Error})
			}
			return ps, err
		}
		c := checker.New(repo, opt)
		rep := progress.Start(a.stderr, a.progressEnabled() && opt.ReadData, func() progress.Status {
			extra := "packs"
			if n := c.P.WALTotal.Load(); n > 0 {
				extra = fmt.Sprintf("packs, %d/%d WAL objects", c.P.WALDone.Load(), n)
			}
			return progress.Status{Files: c.P.PacksDone.Load(), FilesTotal: c.P.PacksTotal.Load(), Bytes: c.P.BytesRead.Load(), Extra: extra}
		})
		report, err := c.Run(ctx)
		rep.Stop()
		if errors.Is(err, backend.ErrUnavailable) && ctx.Err() == nil {
			return fmt.Errorf("%w; so verify stopped: nothing is known to be damaged; run verify again when the store answers", err)
		}
		if err != nil {
			return err
		}
		a.metric("snapshots", float64(report.Snapshots))
		a.metric("bytes_read", float64(report.BytesRead))
		a.metric("problems", float64(len(report.Problems)))
		a.metric("damaged_snapshots", float64(len(report.DamagedSnapshots)))
		a.metric("wal_damaged", float64(report.WALDamaged))
		a.metric("unread", float64(len(report.Unread)))
		if a.jsonOut {
			if err := a.printJSON(verifyJSON{current(), report.OK(), report}); err != nil {
				return err
			}
		} else {
			a.printf("checked %d snapshots, %d packs", report.Snapshots, report.Packs)
			if report.WALObjects > 0 {
				a.printf(", %d WAL objects", report.WALObjects)
			}
			if opt.ReadData {
				a.printf("; read %d packs, %d blobs, %d WAL objects", report.PacksRead, report.BlobsRead, report.WALRead)
				if report.WALDamaged > 0 {
					a.printf(" (%d damaged)", report.WALDamaged)
				}
				a.printf(", %s", progress.Bytes(report.BytesRead))
			}
			a.printf("\n")
			if report.UnindexedPacks > 0 {
				a.printf("%d packs are not indexed (left by an interrupted backup; the next backup indexes and reuses them)\n", report.UnindexedPacks)
			}
			if report.DuplicatePacks > 0 {
				a.printf("%d packs are not indexed but hold only blobs stored in other packs too (harmless duplicates, e.g. of concurrent backups)\n", report.DuplicatePacks)
			}
			if report.CandidatePacks > 0 {
				a.printf("%d packs are not indexed and marked for deletion (a prune stopped before deleting them; the next prune does)\n", report.CandidatePacks)
			}
			if report.RecentPacks > 0 {
				a.printf("%d packs written in the last hour are not indexed yet (a backup may be writing them)\n", report.RecentPacks)
			}
			for _, p := range report.Warnings {
				fmt.Fprintf(a.stderr, "warning: %s: %s\n", p.Object, p.Error)
			}
			for _, p := range report.Problems {
				fmt.Fprintf(a.stderr, "error: %s: %s\n", p.Object, p.Error)
			}
			for _, p := range report.Unread {
				fmt.Fprintf(a.stderr, "not read: %s: %s\n", p.Object, p.Error)
			}
			for _, s := range report.DamagedSnapshots {
				fmt.Fprintf(a.stderr, "damaged snapshot %s (%s, %s):\n", s.ID[:8], fmtTime(s.Time), showPaths(s.Paths))
				for _, f := range s.Files {
					fmt.Fprintf(a.stderr, "  %s\n", tree.Show(f))
				}
				for _, e := range s.Errors {
					fmt.Fprintf(a.stderr, "  error: %s\n", e)
				}
			}
			if report.OK() {
				a.printf("no errors found\n")
			}
		}
		switch {
		case !report.Intact() && len(report.Unread) > 0:
			return fmt.Errorf("the repository is damaged: see the errors above; besides, %s", notRead(report))
		case !report.Intact():
			return errors.New("the repository is damaged: see the errors above")
		case len(report.Unread) > 0:
			return fmt.Errorf("%s; nothing is known to be damaged; run verify again when the store answers", notRead(report))
		}
		return nil
	})
}

// notRead says what a check could not read because the storage did not
// answer (checker.Report.Unread), the first cause, and the snapshots left
// not fully checked.
func notRead(r *checker.Report) string {
	msg := fmt.Sprintf("could not read %s from the storage (%s: %s", plural(len(r.Unread), "object"), r.Unread[0].Object, r.Unread[0].Error)
	if len(r.Unread) > 1 {
		msg += fmt.Sprintf("; and %d more", len(r.Unread)-1)
	}
	msg += ")"
	if n := len(r.UncheckedSnapshots); n > 0 {
		msg += fmt.Sprintf(", so %s could not be checked whole", plural(n, "snapshot"))
	}
	return msg
}

// plural is "1 noun" or "n nouns".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
