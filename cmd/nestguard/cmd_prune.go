package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/prune"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// pruneFlags are prune's flags; 'forget --prune' takes them too.
type pruneFlags struct {
	maxUnused string
	maxRepack string
	grace     time.Duration
}

// add defines the flags on fs.
func (f *pruneFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.maxUnused, "max-unused", "5%", "leave up to this much unused data in partly used packs rather than repack them: a `LIMIT` as a percentage of the repository (5%), a size (500M, 2G, 5B: a number needs its unit) or 'unlimited' (repack nothing)")
	fs.StringVar(&f.maxRepack, "max-repack", "", "repack at most this many bytes of packs in one run (`SIZE` above 0: 10G, 500M; default: no limit; to repack nothing, --max-unused unlimited)")
	fs.DurationVar(&f.grace, "grace", prune.DefaultGrace, "how long a pack marked unused waits before a prune deletes it; 0 deletes in the same run, safe only while no backup, pg backup or copy runs")
}

// options turns the flags into prune options (without the WAL expiry).
func (f *pruneFlags) options(dryRun bool) (prune.Options, error) {
	u, err := prune.ParseUnused(f.maxUnused)
	if err != nil {
		return prune.Options{}, &usageError{err}
	}
	var maxRepack int64
	if f.maxRepack != "" {
		if maxRepack, err = prune.ParseSize(f.maxRepack); err != nil {
			return prune.Options{}, &usageError{fmt.Errorf("--max-repack: %w", err)}
		}
		if maxRepack == 0 {
			// prune.Options.MaxRepack 0 is "no bound": the opposite.
			return prune.Options{}, &usageError{fmt.Errorf("--max-repack %s: want a size above 0; to repack nothing give --max-unused unlimited, for no bound leave --max-repack out", f.maxRepack)}
		}
	}
	if f.grace < 0 {
		return prune.Options{}, &usageError{fmt.Errorf("--grace %s: must not be negative", f.grace)}
	}
	g := f.grace
	return prune.Options{MaxUnused: &u, MaxRepack: maxRepack, Grace: &g, DryRun: dryRun}, nil
}

func (a *app) pruneCommand() *cobra.Command {
	var f pruneFlags
	var dryRun bool
	var keepPITR string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete the data no snapshot needs",
		Long: `Delete the packs no snapshot needs, and repack partly used packs: their
live blobs are copied into new packs, and the old packs go once the new
index is durable. Unused data below --max-unused stays where it is
(restic's rule: at most that share of the repository is unused data;
--max-repack bounds what one run rewrites).

prune takes no lock against backups and is safe while they run: it never deletes a pack
in the run that finds it unused. It marks it in a deletion-candidate
record, and a prune after the grace period (--grace, default 24h) deletes
it if still no snapshot needs it; a pack a snapshot needs again by then is
kept. Backups do not reuse data in marked packs, and a backup that runs
longer than the grace period checks again before saving its snapshot
(docs/format.md, "Prune"). --grace 0 marks and deletes in one run: use it
only when no backup, pg backup or copy runs meanwhile.

Two prunes never run at once: a prune writes a lock record (locks/) and
stops with exit 1, naming the other prune (host, user, pid, start), while
another prune's is live. A prune killed on this host is not waited for;
one killed on another host is, until its record's lease ends (at most 35
minutes). A dry run takes no lock. A prune whose clock is more than 5
minutes off the storage's stops too, saying so.

Packs that Object Lock retention or a legal hold keeps are neither marked
nor deleted: they are reported with the date their retention ends (or
"held"), and a later prune takes them. That is not a failure. A snapshot
that cannot be read, or an index that cannot be, stops the prune before
anything is marked or deleted (run 'nestguard verify', 'repair index').
prune can be interrupted or killed at any point: the next one goes on.

PostgreSQL WAL is not deduplicated: prune removes the WAL objects no kept
base backup needs: those older than the start of the oldest kept one, and
with --keep-pitr D, outside the window from the newest base backup that
ended D ago or earlier (the one 'forget --keep-pitr D' keeps) except the
WAL from start to stop of each older kept base backup (archive-only).
Timeline history files always stay, and without any kept base backup no
WAL is removed (docs/postgres.md, "WAL expiry").

Run 'forget' first to choose the snapshots to remove ('forget --prune'
does both). On S3 it needs the prune/retention operator's permissions
(docs/storage.md, "S3 roles").`,
		Example: `  nestguard prune
  nestguard prune --dry-run
  nestguard prune --max-unused 10% --max-repack 50G
  nestguard prune --keep-pitr 35d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(dryRun)
			if err != nil {
				return err
			}
			keep, err := parseKeepPITR(keepPITR)
			if err != nil {
				return err
			}
			return a.withRepo(cmd.Context(), true, func(repo *repository.Repository) error {
				var plan *walexpiry.Plan
				o.WAL = a.walExpiry(repo, keep, o.GraceOrDefault(), &plan)
				rep, err := a.runPrune(cmd.Context(), repo, o)
				if rep != nil && a.jsonOut {
					if jerr := a.printJSON(pruneJSON{current(), rep, rep.Elapsed.Seconds(), walPlanJSON(plan)}); jerr != nil {
						return jerr
					}
				} else if rep != nil && !a.quiet {
					printWALPlan(a.stdout, plan)
				}
				return err
			})
		},
	}
	f.add(cmd.Flags())
	cmd.Flags().StringVar(&keepPITR, "keep-pitr", "", keepPITRHelp)
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "say what would be marked, repacked and deleted, and change nothing")
	return cmd
}

// runPrune prunes repo with o, with a status line on a terminal, and
// prints the report as text (unless --json: the caller prints it). forget
// --prune calls it too.
func (a *app) runPrune(ctx context.Context, repo *repository.Repository, o prune.Options) (*prune.Report, error) {
	o.Logger = a.log
	var mu sync.Mutex
	var status prune.Progress
	o.Progress = func(p prune.Progress) {
		mu.Lock()
		status = p
		mu.Unlock()
	}
	o.At = a.pruneTestHook()
	pr := progress.Start(a.stderr, a.progressEnabled(), func() progress.Status {
		mu.Lock()
		p := status
		mu.Unlock()
		return progress.Status{Files: p.Done, FilesTotal: p.Total, Bytes: p.Bytes, Extra: p.Step}
	})
	rep, err := prune.Run(ctx, repo, o)
	pr.Stop()
	if rep == nil {
		return nil, err
	}
	// Decided before the error joins the report's errors (found by a
	// hostile test: a prune refused by another's lock printed a summary
	// of zeros, since the error itself counted as something done).
	show := err == nil || pruneDidSomething(rep)
	if err != nil && !errors.Is(err, prune.ErrIncomplete) {
		// What stopped it (another prune running, the storage gone) is
		// in the report too, for --json: its errors name what the
		// incomplete run could not do, and this one is not among them.
		rep.Errors = append(rep.Errors, err.Error())
	}
	a.metric("bytes_deleted", float64(rep.Deleted.Bytes))
	a.metric("packs_deleted", float64(rep.Deleted.Packs))
	if !a.jsonOut && show {
		a.printPruneReport(rep)
	}
	return rep, err
}

// pruneDidSomething reports whether a prune that failed changed anything
// (or, in a dry run, decided anything) worth printing before its error:
// a prune that stopped while reading the repository has only counts that
// were never filled in ("0 snapshots").
func pruneDidSomething(rep *prune.Report) bool {
	return rep.Marked != nil || rep.Repacked.Packs > 0 || rep.Deleted.Packs > 0 || rep.IndexReplaced > 0 ||
		rep.RecordsRemoved > 0 || len(rep.WALRemoved) > 0 || len(rep.Retained) > 0 || len(rep.Warnings) > 0 || len(rep.Errors) > 0
}

// printPruneReport prints what a prune did.
func (a *app) printPruneReport(rep *prune.Report) {
	// verb is what the prune did, or in a dry run would do.
	verb := func(did, would string) string {
		if rep.DryRun {
			return would
		}
		return did
	}
	if rep.DryRun {
		a.printf("dry run: nothing was changed\n")
	}
	a.printf("%d snapshots; %d packs, %s; used %s, unused %s left\n", rep.Snapshots, rep.Packs, progress.Bytes(rep.Bytes),
		progress.Bytes(rep.Used), progress.Bytes(rep.Unused))
	if rep.Repacked.Packs > 0 {
		a.printf("%s %d packs (%s): %d live blobs copied into new packs\n", verb("repacked", "would repack"), rep.Repacked.Packs, progress.Bytes(rep.Repacked.Bytes), rep.RepackedBlobs)
	}
	if m := rep.Marked; m != nil {
		a.printf("%s %d packs (%s) as deletion candidates, deletable from %s", verb("marked", "would mark"), m.Packs, progress.Bytes(m.Bytes), fmtTime(m.NotBefore))
		if !m.Record.IsNull() {
			a.printf(" (record %s)", m.Record.Short())
		}
		a.printf("\n")
		if m.Missing > 0 {
			a.printf("  %d of them are listed by the index but gone from storage (%d held data that snapshots need): they leave the index then\n", m.Missing, m.Lost)
		}
	}
	if rep.Pending.Packs > 0 {
		a.printf("%d packs (%s) marked by earlier prunes wait for their grace period\n", rep.Pending.Packs, progress.Bytes(rep.Pending.Bytes))
	}
	a.printf("%s %d packs, %s\n", verb("deleted", "would delete"), rep.Deleted.Packs, progress.Bytes(rep.Deleted.Bytes))
	if rep.Resurrected.Packs > 0 {
		a.printf("%s %d marked packs (%s) that snapshots need again\n", verb("kept", "would keep"), rep.Resurrected.Packs, progress.Bytes(rep.Resurrected.Bytes))
	}
	for _, w := range rep.WALRemoved {
		a.printf("%s wal/%s\n", verb("removed", "would remove"), w)
	}
	a.printRetained(rep.Retained)
	for _, w := range rep.Warnings {
		fmt.Fprintf(a.stderr, "warning: %s\n", w)
	}
}

// maxRetainedLines bounds the retained objects printed one by one; the
// rest are summed up (--json lists them all).
const maxRetainedLines = 10

// printRetained prints the objects the store kept.
func (a *app) printRetained(rs []prune.Retained) {
	var last time.Time
	for i, r := range rs {
		if r.Until.After(last) {
			last = r.Until
		}
		if i >= maxRetainedLines {
			continue
		}
		if r.Held {
			a.printf("kept %s: under a legal hold\n", r.Object)
		} else {
			a.printf("kept %s: retained by Object Lock until %s\n", r.Object, r.Until.UTC().Format(time.RFC3339))
		}
	}
	if n := len(rs) - maxRetainedLines; n > 0 {
		a.printf("kept %d more objects retained by Object Lock or legal holds, the last until %s (--json lists them)\n", n, last.UTC().Format(time.RFC3339))
	}
}

// pruneTestHook is the end-to-end tests' hook into a prune, only in a
// build with the nestguard_testhooks tag (testhooks_on.go):
// NESTGUARD_TEST_PRUNE_AT=POINT:kill makes the process kill itself with
// SIGKILL at the named point (prune.Point*), to check what a
// killed prune leaves; POINT:pause says "prune test hook: paused at
// POINT" on stderr and waits there until its standard input has a line
// or ends, for a test to take the storage away meanwhile (a fixed wait
// could end before a loaded test got to it).
func (a *app) pruneTestHook() func(string) {
	if !testHooks {
		return nil
	}
	point, action, _ := strings.Cut(a.getenv("NESTGUARD_TEST_PRUNE_AT"), ":")
	if point == "" {
		return nil
	}
	return func(p string) {
		if p != point {
			return
		}
		switch action {
		case "kill":
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		case "pause":
			fmt.Fprintf(a.stderr, "prune test hook: paused at %s\n", p)
			bufio.NewReader(a.stdin).ReadString('\n')
		}
	}
}
