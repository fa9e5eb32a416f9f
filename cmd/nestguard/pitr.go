package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// keepPITRHelp is the help text of --keep-pitr (forget, prune, pg status).
const keepPITRHelp = "keep PostgreSQL WAL to recover to any point of the last `D` (e.g. 35d): the newest base backup that ended before then is kept and WAL after its start stays; older kept base backups keep only their own WAL (archive-only)"

// parseKeepPITR reads a --keep-pitr value ("" is none).
func parseKeepPITR(s string) (policy.Duration, error) {
	if s == "" {
		return policy.Duration{}, nil
	}
	d, err := policy.ParseDuration(s)
	if err != nil {
		return d, &usageError{fmt.Errorf("--keep-pitr: %w", err)}
	}
	if d.Zero() {
		return d, &usageError{fmt.Errorf("--keep-pitr %s: want a duration above zero (leave the flag out to keep WAL from the oldest base backup on)", s)}
	}
	return d, nil
}

// pitrPreview is what the PostgreSQL recovery window becomes once the
// snapshots a forget removes are gone and prune removed the WAL no kept
// base backup needs.
type pitrPreview struct {
	KeepPITR policy.Duration     `json:"keep_pitr,omitzero"`
	Cutoff   time.Time           `json:"cutoff,omitzero"`
	Systems  []*walexpiry.System `json:"systems"`
	// WALFiles and WALBytes are what prune would remove.
	WALFiles int    `json:"wal_files_removed"`
	WALBytes int64  `json:"wal_bytes_removed"`
	Note     string `json:"note,omitempty"`
	// Windows are the recoverable windows afterwards.
	Windows []pg.Window `json:"windows"`
}

// previewPITR computes the window after WAL expiry with the snapshots
// keep keeps (nil: all of them).
func (a *app) previewPITR(ctx context.Context, repo *repository.Repository, keep func(*snapshot.Snapshot) bool, d policy.Duration) (*pitrPreview, error) {
	all, _, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	var kept []*snapshot.Snapshot
	for _, sn := range all {
		if keep == nil || keep(sn) {
			kept = append(kept, sn)
		}
	}
	wal, err := walexpiry.List(ctx, repo)
	if err != nil {
		return nil, err
	}
	// The state once prune's grace period is over: WAL archived within it
	// stays until then (walexpiry.Options.ArchivedAfter), and goes later.
	plan, err := walexpiry.Compute(kept, wal, walexpiry.Options{KeepPITR: d, Now: a.clock()})
	if err != nil {
		return nil, err
	}
	after, err := pg.StatusWith(ctx, repo, pg.StatusOptions{Keep: keep, Without: plan.RemoveNames(), NoWALExpiry: true})
	if err != nil {
		return nil, err
	}
	return &pitrPreview{KeepPITR: d, Cutoff: plan.Cutoff, Systems: plan.Systems, WALFiles: len(plan.Remove),
		WALBytes: plan.RemoveBytes(), Note: plan.Note, Windows: after.Windows}, nil
}

// printWindows prints recoverable windows, indented.
func printWindows(out io.Writer, ws []pg.Window, indent string) {
	if len(ws) == 0 {
		fmt.Fprintf(out, "%snone: no base backup with all its WAL (take one with 'nestguard pg backup')\n", indent)
	}
	for _, w := range ws {
		fmt.Fprintf(out, "%s%s (%s) to %s, timeline %d, from base backup %s\n", indent,
			fmtTime(w.FromTime), w.FromLSN, fmtTime(w.ToTime), w.TLI, w.Base)
		if x := w.LastTransaction; x != nil {
			what := "commit"
			if !x.Committed {
				what = "abort"
			}
			fmt.Fprintf(out, "%s  ends at the last transaction archived: %s of %d at %s (%s); time targets must be before it\n", indent, what, x.XID, fmtTime(x.Time), x.LSN)
		} else {
			fmt.Fprintf(out, "%s  no transaction ended after the base backup: only --to-latest or --to-lsn\n", indent)
		}
		fmt.Fprintf(out, "%s  WAL through %s (%s, archived %s)\n", indent, w.ToLSN, w.LastWAL, fmtTime(w.LastArchived))
		if w.FirstMissing != "" {
			fmt.Fprintf(out, "%s  ends before missing segment %s\n", indent, w.FirstMissing)
		}
	}
}

// printPITRPreview prints what the window becomes; how says after what
// ("after 'forget --keep-pitr 35d' and 'prune'").
func printPITRPreview(out io.Writer, p *pitrPreview, how string) {
	fmt.Fprintf(out, "\nRecoverable window %s:\n", how)
	if p.Note != "" {
		fmt.Fprintf(out, "  %s\n", p.Note)
	}
	for _, s := range p.Systems {
		a := s.Anchor
		fmt.Fprintf(out, "  system %d: WAL kept from base backup %s (started %s, ended %s) on", s.ID, a.Snapshot.Short(), fmtTime(a.StartTime), fmtTime(a.StopTime))
		if s.Short {
			fmt.Fprintf(out, "; shorter than --keep-pitr %s: no kept base backup ended before %s", p.KeepPITR, fmtTime(p.Cutoff))
		}
		fmt.Fprintln(out)
		for _, b := range s.Backups {
			if b.Role == walexpiry.RoleArchiveOnly {
				fmt.Fprintf(out, "    archive-only: base backup %s (ended %s) keeps its WAL %s to %s\n", b.Snapshot.Short(), fmtTime(b.StopTime), b.StartWAL, b.StopWAL)
			}
		}
	}
	fmt.Fprintf(out, "  WAL prune removes: %d files, %s\n", p.WALFiles, progress.Bytes(p.WALBytes))
	printWindows(out, p.Windows, "  ")
}

// walExpiry is prune's WAL hook (prune.Options.WAL): the WAL objects of
// repo that no kept base backup and no --keep-pitr window of keep needs.
// WAL archived within grace stays. The plan it made is left in *plan for
// the report.
func (a *app) walExpiry(repo walexpiry.Lister, keep policy.Duration, grace time.Duration, plan **walexpiry.Plan) func(context.Context, []*snapshot.Snapshot) ([]string, []walexpiry.Boundary, error) {
	return func(ctx context.Context, kept []*snapshot.Snapshot) ([]string, []walexpiry.Boundary, error) {
		wal, err := walexpiry.List(ctx, repo)
		if err != nil {
			return nil, nil, err
		}
		now := a.clock()
		p, err := walexpiry.Compute(kept, wal, walexpiry.Options{KeepPITR: keep, Now: now, ArchivedAfter: now.Add(-grace)})
		if err != nil {
			return nil, nil, err
		}
		*plan = p
		return walexpiry.Names(p.Remove), p.Boundaries(), nil
	}
}

// printWALPlan prints what the WAL expiry of a prune kept the window at.
func printWALPlan(out io.Writer, p *walexpiry.Plan) {
	if p == nil {
		return
	}
	if p.Note != "" {
		fmt.Fprintf(out, "PostgreSQL WAL: %s\n", p.Note)
	}
	for _, s := range p.Systems {
		a := s.Anchor
		what := "the oldest kept base backup"
		if !p.KeepPITR.Zero() {
			what = "the anchor of --keep-pitr " + p.KeepPITR.String()
			if s.Short {
				what += " (no kept base backup ended before " + fmtTime(p.Cutoff) + ": the window is shorter)"
			}
		}
		fmt.Fprintf(out, "PostgreSQL system %d: WAL kept from base backup %s (ended %s, %s) on\n", s.ID, a.Snapshot.Short(), fmtTime(a.StopTime), what)
		for _, b := range s.Backups {
			if b.Role == walexpiry.RoleArchiveOnly {
				fmt.Fprintf(out, "  archive-only base backup %s keeps its WAL %s to %s\n", b.Snapshot.Short(), b.StartWAL, b.StopWAL)
			}
		}
	}
}
