package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/class"
	"github.com/nestguard/nestguard/internal/forget"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/prune"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// forgetOptions are what forget is asked to do: its flags and arguments.
// Later options (--keep-pitr, prune's) add fields here.
type forgetOptions struct {
	forget.Options
	groupBy  string
	timeZone string
	keepPITR string
	// prune runs prune after the forget, with pruneFlags.
	prune      bool
	pruneFlags pruneFlags
}

func (a *app) forgetCommand() *cobra.Command {
	var o forgetOptions
	cmd := &cobra.Command{
		Use:   "forget (--keep-* RULE... | SNAPSHOT...)",
		Short: "Remove snapshots by retention policy or by ID (floors, legal holds and Object Lock always win)",
		Long: `Remove snapshots that a retention policy does not keep, or the snapshots
named by ID. The data only they needed stays in the repository until
'nestguard prune' deletes it.

The policy has restic's --keep-* rules. Snapshots are divided into groups
(--group-by, default host and paths; always by data class too) and the
rules apply to each group on its own, newest snapshot first. A snapshot is
kept if any rule keeps it:

  --keep-last N          the N newest snapshots
  --keep-hourly N        the newest snapshot of each of the N newest hours that
  --keep-daily N         have one (days, ISO weeks, months, years), in the
  --keep-weekly N        snapshot's own time zone; -1 keeps every bucket.
  --keep-monthly N       While a rule has buckets left over, it also keeps the
  --keep-yearly N        group's oldest snapshot, as restic does.
  --keep-within D        every snapshot within D of the group's newest one
                         (D: calendar units y, m, d, h, e.g. 35d, 1y6m)
  --keep-within-daily D  the newest of each day within D (also -hourly,
                         -weekly, -monthly, -yearly)
  --keep-tag T1,T2       every snapshot with all these tags (repeatable)

A rule of 0 (or 0d) keeps nothing and is the same as leaving it out; rules
that are all 0 are refused rather than taken for no rule at all.

Backups record their time in UTC, so their days are UTC days; --time-zone
Z (America/New_York, Local) counts the buckets and the durations in Z.

--host, --tag, --path and --class choose the snapshots the policy applies
to; others are left alone. Every snapshot is listed with the rules that
kept it, or why none did.

Data classes (docs/retention.md): the config file can define classes with a
floor and a policy; 'backup --class C' and 'pg backup --class C' record the
class and the end of its floor in the snapshot. Without --keep-* rules,
forget applies each class's own policy to its snapshots, and keeps the
snapshots whose class has none. With --keep-* rules, the rules replace the
classes' policies, never their floors.

Whatever the policy or the IDs say, forget never removes a snapshot:
  - before the end of its class's floor (the later of the date recorded in
    the snapshot and the floor the config file has now);
  - under an active legal hold ('nestguard hold list');
  - whose snapshot object Object Lock still retains (or holds).
Such a snapshot is reported as retained, with the date it becomes
removable where there is one. Everything is decided before anything is
removed, and --dry-run only reports.

PostgreSQL base backups are forgotten like other snapshots, and prune
then removes the WAL no kept base backup needs: the WAL older than the
oldest kept one. With --keep-pitr D recovery to any point of the last D
stays possible: the newest base backup that ended D ago or earlier is kept
whatever the policy says (reason "keep-pitr anchor"), the WAL after its
start stays, and older kept base backups keep only the WAL from their
start to their stop (archive-only: restorable to their end). Give prune
the same --keep-pitr (--prune does). --dry-run also shows the recovery window now and
after this forget and prune (docs/postgres.md, "WAL expiry").

--prune runs prune after the forget, with prune's --max-unused,
--max-repack and --grace: the data only the removed snapshots needed is
marked, and deleted once its grace period has passed (see 'nestguard
prune --help'). With --dry-run it runs prune's dry run as if the
snapshots were removed: what prune would repack, mark and delete.

Exit codes: 0 when everything the policy removes was removed (snapshots
retained by floors, holds or Object Lock are reported, not failures);
4 when a snapshot named by ID was retained; 3 when some snapshot objects
could not be read (left alone); 1 on any other error.`,
		Example: `  nestguard forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run   # what would go
  nestguard forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --prune     # per host and paths, then prune
  nestguard forget --keep-within 35d --keep-within-monthly 7y --host db1
  nestguard forget --class financial-records   # the class's own policy (config file)
  nestguard forget                             # every class's own policy
  nestguard forget 4f2a9c1e 9be07d12           # these two snapshots
  nestguard forget --keep-monthly 84 --keep-pitr 35d --dry-run   # base backups: a 35-day PITR window`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.IDs = args
			if err := checkZeroRules(cmd.Flags(), o.Policy); err != nil {
				return err
			}
			if len(args) > 0 {
				o.dropConfigSelection(cmd.Flags())
			}
			return a.runForget(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	addPolicyFlags(f, &o.Policy)
	f.StringVar(&o.Filter.Host, "host", "", "apply the policy only to snapshots of this host")
	f.StringArrayVar(&o.Filter.Tags, "tag", nil, "apply the policy only to snapshots with this tag (repeatable: all of them)")
	f.StringArrayVar(&o.Filter.Paths, "path", nil, "apply the policy only to snapshots of exactly these paths (repeatable)")
	f.StringVar(&o.Class, "class", "", "apply the policy only to snapshots of this data class")
	f.StringVar(&o.groupBy, "group-by", "host,paths", "divide snapshots into groups by these fields (host, tags, paths, comma-separated; \"\" for one group); always by data class too")
	f.StringVar(&o.timeZone, "time-zone", "", "count the calendar buckets (days, weeks, months, years) and --keep-within* durations in this `ZONE` (IANA name such as America/New_York, or Local) instead of each snapshot's own (backups record UTC)")
	f.BoolVarP(&o.DryRun, "dry-run", "n", false, "only report what would be removed (and the PostgreSQL recovery window before and after)")
	f.StringVar(&o.keepPITR, "keep-pitr", "", keepPITRHelp)
	f.BoolVar(&o.prune, "prune", false, "then run prune: delete the data no remaining snapshot needs (with prune's --max-unused, --max-repack and --grace; see 'nestguard prune --help'); with --dry-run, prune's dry run as if the snapshots were removed")
	o.pruneFlags.add(f)
	return cmd
}

// dropConfigSelection forgets the policy and selection of the config
// file's [forget] section when snapshots are named by ID: they are the
// defaults of policy runs, and would otherwise make every 'forget ID' a
// usage error. A rule or selection given on the command line stays (and
// is refused beside IDs).
func (o *forgetOptions) dropConfigSelection(f *pflag.FlagSet) {
	fromConfig, fromArgs := false, false
	f.Visit(func(fl *pflag.Flag) {
		if !selectionFlag(fl.Name) {
			return
		}
		if setByConfig(fl) {
			fromConfig = true
		} else {
			fromArgs = true
		}
	})
	if fromConfig && !fromArgs {
		o.Policy, o.Filter, o.Class = policy.Policy{}, snapshot.Filter{}, ""
	}
}

// selectionFlag reports whether forget's flag name is a --keep-* rule or
// a selection (--host, --tag, --path, --class), which IDs exclude.
func selectionFlag(name string) bool {
	switch name {
	case "keep-pitr":
		return false
	case "host", "tag", "path", "class":
		return true
	}
	return strings.HasPrefix(name, "keep-")
}

// addPolicyFlags defines the --keep-* flags, which set p.
func addPolicyFlags(f *pflag.FlagSet, p *policy.Policy) {
	for _, c := range []struct {
		name string
		n    *int
		what string
	}{
		{"keep-last", &p.KeepLast, "the `N` newest snapshots"},
		{"keep-hourly", &p.KeepHourly, "the newest snapshot of each of the `N` newest hours that have one"},
		{"keep-daily", &p.KeepDaily, "the newest snapshot of each of the `N` newest days that have one"},
		{"keep-weekly", &p.KeepWeekly, "the newest snapshot of each of the `N` newest ISO weeks that have one"},
		{"keep-monthly", &p.KeepMonthly, "the newest snapshot of each of the `N` newest months that have one"},
		{"keep-yearly", &p.KeepYearly, "the newest snapshot of each of the `N` newest years that have one"},
	} {
		f.IntVar(c.n, c.name, 0, "keep "+c.what+" (-1: all)")
	}
	for _, c := range []struct {
		name string
		d    *policy.Duration
		what string
	}{
		{"keep-within", &p.KeepWithin, "every snapshot"},
		{"keep-within-hourly", &p.KeepWithinHourly, "the newest snapshot of each hour"},
		{"keep-within-daily", &p.KeepWithinDaily, "the newest snapshot of each day"},
		{"keep-within-weekly", &p.KeepWithinWeekly, "the newest snapshot of each ISO week"},
		{"keep-within-monthly", &p.KeepWithinMonthly, "the newest snapshot of each month"},
		{"keep-within-yearly", &p.KeepWithinYearly, "the newest snapshot of each year"},
	} {
		f.Var(durationValue{c.d}, c.name, "keep "+c.what+" within `D` of the group's newest snapshot (calendar units y, m, d, h: 35d, 1y6m)")
	}
	f.Var(tagGroupsValue{&p.KeepTags}, "keep-tag", "keep every snapshot that has all of these `TAGS` (comma-separated; repeatable)")
}

// checkZeroRules refuses --keep-* rules that were given (on the command
// line or in the config file) but are all 0 or 0d: they keep no snapshot,
// so they are no policy, and forget would otherwise apply the data
// classes' own policies instead, which is not what was asked.
func checkZeroRules(f *pflag.FlagSet, p policy.Policy) error {
	if !p.Empty() {
		return nil
	}
	var given []string
	f.Visit(func(fl *pflag.Flag) {
		if !strings.HasPrefix(fl.Name, "keep-") || fl.Name == "keep-pitr" || fl.Name == "keep-tag" {
			return
		}
		v := "0"
		if _, ok := fl.Value.(durationValue); ok {
			v = "0d"
		}
		given = append(given, "--"+fl.Name+" "+v)
	})
	if len(given) == 0 {
		return nil
	}
	what := given[0] + " keeps no snapshot, so it is"
	if len(given) > 1 {
		what = strings.Join(given, ", ") + " keep no snapshot, so they are"
	}
	return &usageError{fmt.Errorf("%s no policy: give a count of at least 1 (-1: every bucket) or a duration above 0, or leave the --keep-* rules out to apply the data classes' own policies", what)}
}

// durationValue is a --keep-within* flag.
type durationValue struct{ d *policy.Duration }

func (v durationValue) String() string {
	if v.d == nil || v.d.Zero() {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := policy.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (durationValue) Type() string { return "duration" }

// tagGroupsValue is the repeatable --keep-tag flag.
type tagGroupsValue struct{ groups *[][]string }

func (v tagGroupsValue) String() string {
	if v.groups == nil {
		return ""
	}
	s := make([]string, len(*v.groups))
	for i, g := range *v.groups {
		s[i] = strings.Join(g, ",")
	}
	return strings.Join(s, " ")
}

func (v tagGroupsValue) Set(s string) error {
	g, err := class.TagGroup(s)
	if err == nil {
		// A tag no snapshot can hold keeps nothing (found by a hostile
		// test: forget --keep-tag with bytes that are not UTF-8 went on).
		err = snapshot.CheckTags(g)
	}
	if err != nil {
		return err
	}
	*v.groups = append(*v.groups, g)
	return nil
}

// Type ends in "Array": the config file may give several (see repeatable).
func (tagGroupsValue) Type() string { return "stringArray" }

// retainedError is forget's error when a snapshot named by ID was kept by
// a floor, a hold or Object Lock (exit code 4).
type retainedError struct{ msg string }

func (e *retainedError) Error() string { return e.msg }

func (a *app) runForget(ctx context.Context, o forgetOptions) error {
	if err := snapshot.CheckTags(o.Filter.Tags); err != nil {
		return &usageError{fmt.Errorf("--tag: %w", err)}
	}
	if err := snapshot.CheckHost(o.Filter.Host); err != nil {
		return &usageError{fmt.Errorf("--host: %w", err)}
	}
	g, err := policy.ParseGroupBy(o.groupBy)
	if err != nil {
		return &usageError{err}
	}
	o.GroupBy = g
	if o.timeZone != "" {
		if o.TimeZone, err = time.LoadLocation(o.timeZone); err != nil {
			return &usageError{fmt.Errorf("--time-zone %q: want an IANA time zone name such as America/New_York or Europe/Berlin, or Local: %w", o.timeZone, err)}
		}
	}
	o.Classes = a.classes
	if o.KeepPITR, err = parseKeepPITR(o.keepPITR); err != nil {
		return err
	}
	o.Now = a.clock()
	if err := o.Check(); err != nil {
		return &usageError{err}
	}
	var po prune.Options
	if o.prune {
		if po, err = o.pruneFlags.options(o.DryRun); err != nil {
			return err
		}
	}
	// What forget removes goes into the audit log before the first
	// removal (docs/audit.md, "Removals").
	o.BeforeRemove = func(ctx context.Context, ids []id.ID) error {
		what := make([]string, len(ids))
		for i, sid := range ids {
			what[i] = "-" + backend.Handle{Type: backend.SnapshotFile, Name: sid.String()}.String()
		}
		return a.intend(ctx, what)
	}
	return a.withRepo(ctx, o.prune, func(repo *repository.Repository) error {
		rep, err := forget.Run(ctx, repo, o.Options)
		if rep == nil {
			if errors.Is(err, forget.ErrUnknownClass) {
				return &usageError{err}
			}
			return err
		}
		var win *forgetPITR
		if rep.DryRun && err == nil {
			if win, err = a.forgetPITR(ctx, repo, rep, o.KeepPITR); err != nil {
				return err
			}
		}
		a.printForget(rep)
		a.printForgetPITR(win)
		out := forgetReportJSON(rep)
		if win != nil {
			out.PITRBefore, out.PITRAfter = win.before, win.after
		}
		var perr error
		switch {
		case o.prune && err != nil:
			a.printf("\n--prune: prune did not run, as the forget failed\n")
		case o.prune:
			if rep.DryRun {
				// What prune would do once the snapshots are gone.
				po.Without = rep.ToRemove()
				a.printf("\nprune, as if the snapshots above were removed:\n")
			} else {
				a.printf("\nprune:\n")
			}
			var prep *prune.Report
			var plan *walexpiry.Plan
			po.WAL = a.walExpiry(repo, o.KeepPITR, po.GraceOrDefault(), &plan)
			if prep, perr = a.runPrune(ctx, repo, po); prep != nil {
				out.Prune = &pruneJSON{current(), prep, prep.Elapsed.Seconds(), walPlanJSON(plan)}
				if !a.jsonOut && !a.quiet {
					printWALPlan(a.stdout, plan)
				}
			}
		}
		if a.jsonOut {
			if jerr := a.printJSON(out); jerr != nil {
				return errors.Join(err, perr, jerr)
			}
		}
		ferr := forgetOutcome(rep, err)
		switch {
		case perr == nil:
			return ferr
		case ferr == nil:
			return fmt.Errorf("prune after forget: %w", perr)
		}
		return fmt.Errorf("%v; prune after forget: %w", ferr, perr)
	})
}

// forgetPITR is the PostgreSQL recovery window before and after a forget
// (and the prune after it).
type forgetPITR struct {
	before []pg.Window
	after  *pitrPreview
}

// forgetPITR computes the window before and after the forget rep plans;
// nil when the repository has no base backup.
func (a *app) forgetPITR(ctx context.Context, repo *repository.Repository, rep *forget.Report, keep policy.Duration) (*forgetPITR, error) {
	removed := rep.ToRemove()
	anyPG := false
	for _, g := range rep.Groups {
		for _, e := range g.Entries {
			anyPG = anyPG || e.Snapshot.Kind == snapshot.KindPostgres
		}
	}
	if !anyPG {
		return nil, nil
	}
	st, err := pg.StatusWith(ctx, repo, pg.StatusOptions{NoWALExpiry: true}) // the windows only
	if err != nil {
		return nil, err
	}
	after, err := a.previewPITR(ctx, repo, func(sn *snapshot.Snapshot) bool { return !removed[sn.ID] }, keep)
	if err != nil {
		return nil, err
	}
	return &forgetPITR{before: st.Windows, after: after}, nil
}

func (a *app) printForgetPITR(w *forgetPITR) {
	if w == nil || a.quiet || a.jsonOut {
		return
	}
	fmt.Fprintln(a.stdout, "\nRecoverable window now:")
	printWindows(a.stdout, w.before, "  ")
	how := "after this forget and 'prune'"
	if !w.after.KeepPITR.Zero() {
		how = fmt.Sprintf("after this forget and 'prune --keep-pitr %s'", w.after.KeepPITR)
	}
	printPITRPreview(a.stdout, w.after, how)
}

// forgetOutcome is forget's error: a removal that failed, a snapshot named
// by ID that was retained, or snapshots that could not be read.
func forgetOutcome(rep *forget.Report, err error) error {
	if err != nil {
		if rep.Removed() == 0 {
			return fmt.Errorf("no snapshot was removed: %w", err)
		}
		others := fmt.Sprintf("%d others were", rep.Removed())
		if rep.Removed() == 1 {
			others = "1 other was"
		}
		return fmt.Errorf("%s could not be removed (%s): %w", plural(len(rep.Failed()), "snapshot"), others, err)
	}
	var retained []string
	for _, g := range rep.Groups {
		if g.Source != forget.FromIDs {
			continue
		}
		for _, e := range g.Entries {
			if e.Action == forget.Retain {
				retained = append(retained, fmt.Sprintf("snapshot %s: %s", e.Snapshot.ID.Short(), vetoText(e.Vetoes)))
			}
		}
	}
	if len(retained) > 0 {
		return &retainedError{fmt.Sprintf("%d of the snapshots named were not removed: %s", len(retained), strings.Join(retained, "; "))}
	}
	if len(rep.Unreadable) > 0 {
		return &partialError{fmt.Sprintf("%d snapshot objects could not be read and were left alone (run 'nestguard verify'): %v", len(rep.Unreadable), errors.Join(rep.Unreadable...))}
	}
	return nil
}

func vetoText(vs []forget.Veto) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.Detail
	}
	return strings.Join(s, "; ")
}

// policySource says where a group's policy comes from, for the text.
func policySource(g forget.Group) string {
	switch g.Source {
	case forget.FromFlags:
		return "policy " + policyFlags(g.Policy)
	case forget.FromClass:
		return "policy " + policyFlags(g.Policy) + " of data class " + g.Key.Class
	case forget.FromIDs:
		return "snapshots named by ID"
	}
	if g.Key.Class != "" {
		return "no policy (data class " + g.Key.Class + " has none, and no --keep-* rule was given): every snapshot kept"
	}
	return "no policy (no data class, and no --keep-* rule was given): every snapshot kept"
}

// policyFlags spells p as the flags that give it.
func policyFlags(p policy.Policy) string {
	var s []string
	for _, c := range []struct {
		name string
		n    int
	}{{"last", p.KeepLast}, {"hourly", p.KeepHourly}, {"daily", p.KeepDaily}, {"weekly", p.KeepWeekly}, {"monthly", p.KeepMonthly}, {"yearly", p.KeepYearly}} {
		if c.n != 0 {
			s = append(s, fmt.Sprintf("--keep-%s %d", c.name, c.n))
		}
	}
	for _, c := range []struct {
		name string
		d    policy.Duration
	}{{"", p.KeepWithin}, {"-hourly", p.KeepWithinHourly}, {"-daily", p.KeepWithinDaily}, {"-weekly", p.KeepWithinWeekly}, {"-monthly", p.KeepWithinMonthly}, {"-yearly", p.KeepWithinYearly}} {
		if !c.d.Zero() {
			s = append(s, fmt.Sprintf("--keep-within%s %s", c.name, c.d))
		}
	}
	for _, g := range p.KeepTags {
		s = append(s, "--keep-tag "+strings.Join(g, ","))
	}
	return strings.Join(s, " ")
}

func (a *app) printForget(rep *forget.Report) {
	if a.quiet || a.jsonOut {
		return
	}
	remove := "removed"
	if rep.DryRun {
		a.printf("dry run: nothing is removed\n")
		remove = "would remove"
	}
	for _, g := range rep.Groups {
		key := g.Key.String()
		if key == "" {
			key = "all snapshots"
		}
		if g.Source == forget.FromIDs {
			a.printf("\n%s:\n", policySource(g))
		} else {
			a.printf("\n%s: %s\n", key, policySource(g))
		}
		tw := newTable(a.stdout, 2, 4)
		for _, e := range g.Entries {
			action, why := string(e.Action), strings.Join(reasonTexts(e), "; ")
			switch {
			case e.Action == forget.Remove && e.Err != nil:
				action, why = "FAILED", e.Err.Error()
			case e.Action == forget.Remove:
				action = remove
			case e.Action == forget.Retain:
				action = "retained"
				why = vetoText(e.Vetoes)
				if w := strings.Join(reasonTexts(e), "; "); w != "" {
					why += " (no rule keeps it: " + w + ")"
				}
			}
			if e.Action == forget.Keep && why == "" {
				why = "no policy"
			}
			when := fmtTime(e.Snapshot.Time)
			if e.Damaged != nil {
				when = "?"
				why = strings.TrimPrefix(why+"; ", "; ") + "damaged snapshot object: " + e.Damaged.Error()
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", action, e.Snapshot.ID.Short(), when, why)
		}
		tw.Flush()
	}
	removed := "removed"
	if rep.DryRun {
		removed = "to remove (dry run)"
	}
	a.printf("\n%d kept, %d %s, %d retained (floors, legal holds, Object Lock)", rep.Count(forget.Keep), rep.Removed(), removed, rep.Count(forget.Retain))
	if n := len(rep.Failed()); n > 0 {
		a.printf(", %d FAILED", n)
	}
	a.printf("\n")
}

func reasonTexts(e forget.Entry) []string {
	s := make([]string, len(e.Reasons))
	for i, r := range e.Reasons {
		s[i] = r.String()
	}
	return s
}
