package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/hold"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

func (a *app) holdCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hold",
		Short: "Place, release and list legal holds on snapshots",
		Long: `A legal hold keeps a snapshot, and every object it needs, from being
deleted until the hold is explicitly released, whatever its retention.
Holds are recorded in the repository (who, when, which case, why); the
records are never rewritten, so the history stays complete.

On an S3 bucket with Object Lock, every object the snapshot needs (its
packs, including every pack holding a copy of one of its blobs that two
backups at once both stored, the index objects listing them, the snapshot object, the config and
key slots, and for PostgreSQL its WAL) gets an S3 legal hold, which
survives the end of the retention period, and so does the hold's record
under holds/ (until the hold is released; the records are then retained
for the repository's minimum retention). Elsewhere (a local directory, a
bucket without Object Lock) the storage cannot enforce a hold: 'hold add'
then records nothing and fails, unless --record-only accepts a hold that
is only recorded and enforced by nothing.

On S3, 'hold add' and 'hold release' need the hold officer role's
permissions (docs/storage.md, "S3 roles"); the backup hosts' credentials
(backup writer) are refused, and the error says which permission is
missing.`,
	}
	var caseID, reason string
	var recordOnly bool
	add := &cobra.Command{
		Use:     "add SNAPSHOT --case ID --reason TEXT",
		Short:   "Place a legal hold on a snapshot",
		Example: `  nestguard hold add 4f2a9c1e --case SEC-2024-117 --reason "subpoena of 2024-03-02"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.holdChange(cmd.Context(), args[0], caseID, reason, hold.ActionAdd, recordOnly)
		},
	}
	release := &cobra.Command{
		Use:   "release SNAPSHOT --case ID --reason TEXT",
		Short: "Release a legal hold (recorded)",
		Long: `Release the hold of one case on a snapshot. The release is recorded first;
then the legal hold is cleared on the snapshot's objects that no other
active hold needs. The objects stay protected by their retention, if any.`,
		Example: `  nestguard hold release 4f2a9c1e --case SEC-2024-117 --reason "case closed 2025-01-15"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.holdChange(cmd.Context(), args[0], caseID, reason, hold.ActionRelease, recordOnly)
		},
	}
	for _, c := range []*cobra.Command{add, release} {
		c.Flags().StringVar(&caseID, "case", "", "case or matter ID the hold belongs to (required)")
		c.Flags().StringVar(&reason, "reason", "", "why (required; recorded)")
	}
	add.Flags().BoolVar(&recordOnly, "record-only", false, "accept storage that cannot enforce holds: record the hold only (nothing stops deletion)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List active holds and the history of holds",
		Long: `List the holds in force and every hold record, oldest first.

On storage that enforces legal holds (S3 with Object Lock), each active
hold is checked: every object it covers (the snapshot's and the hold's
record) must carry a legal hold. A hold where some do not (a 'hold add'
that stopped part way) shows as "partial" and the command exits 1:
run the 'hold add' again to finish it. The check asks the storage about
each object (s3:GetObjectLegalHold).

A record that cannot be read (damaged or malformed) is named on stderr and
left out, and the command exits 3: the hold it records may be missing from
the list. Until it reads, forget removes nothing, since it cannot tell
what the record holds; verify reports it. Restore holds/<id> from a copy
of the storage (an earlier object version, a replica, a backup of the
repository's storage). Never delete it: a hold must not end because its
record was damaged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.holdList(cmd.Context())
		},
	}
	cmd.AddCommand(add, release, list)
	return cmd
}

func (a *app) holdChange(ctx context.Context, ref, caseID, reason, action string, recordOnly bool) error {
	if strings.TrimSpace(caseID) == "" || strings.TrimSpace(reason) == "" {
		return &usageError{errors.New("--case and --reason must not be empty")}
	}
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		found, err := findSnapshots(ctx, repo, ref)
		if err != nil {
			return err
		}
		sn := found[0]
		o := hold.Options{RecordOnly: recordOnly}
		var res *hold.Result
		if action == hold.ActionAdd {
			res, err = hold.Add(ctx, repo, sn, caseID, reason, o)
		} else {
			// In the audit log before anything changes: a release
			// killed partway leaves its Started record there.
			if err := a.intend(ctx, []string{fmt.Sprintf("hold of snapshot %s case %s", sn.ID, caseID)}); err != nil {
				return err
			}
			res, err = hold.Release(ctx, repo, sn, caseID, reason, o)
		}
		if res != nil {
			a.printHoldResult(repo, sn, caseID, action, res, err == nil)
		}
		return err
	})
}

// printHoldResult reports what a hold command did; warn says to point out
// a hold that is only recorded (a failure already says so).
func (a *app) printHoldResult(repo *repository.Repository, sn *snapshot.Snapshot, caseID, action string, res *hold.Result, warn bool) {
	if a.jsonOut {
		out := holdJSON{versioned: current(), Snapshot: sn.ID.String(), Case: caseID, Action: action, Objects: res.Objects,
			Changed: res.Changed, Kept: res.Kept, Enforced: res.Enforced, Recorded: res.Record != nil}
		if res.Record != nil {
			out.Record = res.Record.ID.String()
		}
		a.printJSON(out)
		return
	}
	verb := map[string]string{hold.ActionAdd: "hold", hold.ActionRelease: "release"}[action]
	if res.Record != nil {
		a.printf("%s of snapshot %s for case %q recorded (%s)\n", verb, sn.ID.Short(), caseID, res.Record.ID.Short())
	} else {
		a.printf("%s of snapshot %s for case %q was already recorded\n", verb, sn.ID.Short(), caseID)
	}
	switch {
	case !res.Enforced:
		if !warn {
			return
		}
		fmt.Fprintf(a.stderr, "warning: %s cannot enforce legal holds: the hold is recorded only, and nothing stops the snapshot's objects from being deleted\n", repo.Location())
	case action == hold.ActionAdd && !res.RecordHeld:
		// Not even the record's legal hold was placed: the error says
		// so, and nothing was placed to report.
	case action == hold.ActionAdd && warn:
		a.printf("legal hold placed on %d objects and on the hold's record\n", res.Changed)
	case action == hold.ActionAdd:
		// Failed partway: only what was placed.
		a.printf("legal hold placed on the hold's record and on %d of the snapshot's %d objects\n", res.Changed, res.Objects)
	default:
		a.printf("legal hold cleared on %d objects", res.Changed)
		if res.Kept > 0 {
			a.printf("; %d stay held for other active holds", res.Kept)
		}
		a.printf("\n")
	}
}

// holdView is a record as 'hold list --json' prints it.
type holdView struct {
	ID string `json:"id"`
	*hold.Record
}

func (a *app) holdList(ctx context.Context) error {
	return a.withRepo(ctx, false, func(repo *repository.Repository) error {
		records, errs, err := hold.List(ctx, repo)
		if err != nil {
			return err
		}
		unreadable := make([]unreadableJSON, 0, len(errs))
		for _, e := range errs {
			obj, why := hold.Describe(e)
			unreadable = append(unreadable, unreadableJSON{Object: obj, Error: why})
			fmt.Fprintf(a.stderr, "error: %v\n", e)
		}
		active := hold.Active(records)
		partial, err := hold.CheckEnforced(ctx, repo, records, 0)
		if err != nil {
			return fmt.Errorf("checking that the active holds' objects carry legal holds: %w", err)
		}
		unheld := make(map[*hold.Record]hold.Partial, len(partial))
		partialView := make([]partialHoldJSON, 0, len(partial))
		for _, p := range partial {
			unheld[p.Record] = p
			partialView = append(partialView, partialHoldJSON{Snapshot: p.Record.Snapshot.String(), Case: p.Record.Case, Partial: p})
		}
		if a.jsonOut {
			view := func(rs []*hold.Record) []holdView {
				out := make([]holdView, 0, len(rs))
				for _, r := range rs {
					out = append(out, holdView{ID: r.ID.String(), Record: r})
				}
				return out
			}
			if err := a.printJSON(holdListJSON{current(), view(active), view(records), unreadable, partialView}); err != nil {
				return err
			}
			return holdListErr(errs, partial)
		}
		tw := newTable(a.stdout, 2, 4)
		fmt.Fprintf(tw, "Active holds: %d\n", len(active))
		if len(active) > 0 {
			fmt.Fprintln(tw, "Snapshot\tCase\tSince\tBy\tEnforced\tReason")
			for _, r := range active {
				enforced := fmt.Sprint(r.Enforced)
				if p, ok := unheld[r]; ok {
					enforced = fmt.Sprintf("partial: %d of %d objects not held", p.Unheld, p.Objects)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s@%s\t%s\t%s\n", r.Snapshot.Short(), r.Case, fmtTime(r.Time), r.User, r.Host, enforced, r.Reason)
			}
		}
		fmt.Fprintf(tw, "\nHistory: %d records\n", len(records))
		if len(records) > 0 {
			fmt.Fprintln(tw, "Time\tAction\tSnapshot\tCase\tBy\tReason")
			for _, r := range records {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s@%s\t%s\n", fmtTime(r.Time), r.Action, r.Snapshot.Short(), r.Case, r.User, r.Host, r.Reason)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return holdListErr(errs, partial)
	})
}

// holdListErr is the error of 'hold list': exit 1 for a hold whose
// objects do not all carry a legal hold (it protects less than it says),
// else exit 3 for records that could not be read.
func holdListErr(errs []error, partial []hold.Partial) error {
	if len(partial) == 0 {
		return unreadableHolds(errs)
	}
	var b strings.Builder
	for i, p := range partial {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "hold %q of snapshot %s: %d of its %d objects carry no legal hold (a 'hold add' stopped part way): run 'nestguard hold add %s --case %q --reason ...' again to finish it",
			p.Record.Case, p.Record.Snapshot.Short(), p.Unheld, p.Objects, p.Record.Snapshot.Short(), p.Record.Case)
	}
	if len(errs) > 0 {
		fmt.Fprintf(&b, "; and %d hold records could not be read: %s", len(errs), hold.RemedyFor(errs))
	}
	return errors.New(b.String())
}

// unreadableHolds makes 'hold list' exit 3 when records could not be
// read: the holds they record are missing from the list.
func unreadableHolds(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &partialError{fmt.Sprintf("%d legal hold records could not be read (named above) and are left out, so a hold may be missing from this list: %s", len(errs), hold.RemedyFor(errs))}
}
