package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/atomicfile"
	"github.com/nestguard/nestguard/internal/audit"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/class"
	"github.com/nestguard/nestguard/internal/compliance"
	"github.com/nestguard/nestguard/internal/hold"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

func (a *app) reportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Reports on the repository: compliance",
	}
	cmd.AddCommand(annotate(a.reportComplianceCommand(), auditSkip))
	return annotate(cmd, auditSkip)
}

type reportComplianceOptions struct {
	framework, from, to, format, output, maxKeyAge string
	// formatSet: --format was given (on the command line or in the
	// config file), not left at its default.
	formatSet bool
}

func (a *app) reportComplianceCommand() *cobra.Command {
	var o reportComplianceOptions
	cmd := &cobra.Command{
		Use:   "compliance",
		Short: "Evaluate compliance controls against the repository and its audit log",
		Long: `Evaluate the controls of SOX, PCI DSS 4.0, GDPR, FINRA/SEC 17a-4 and
ISO/IEC 27001:2022 against the evidence in the repository: backups as
often as each data class's RPO (every breach listed), retention floors
held, Object Lock, legal holds, encryption, copies to a second repository,
the newest verify --read-data and restore test (its time against the
class's RTO), key age, and every failed operation of the period. Each
control names the clauses it serves and cites the audit records it rests
on; --format json embeds the signed checkpoint and an inclusion proof of
each, which 'audit verify --proof REPORT' checks. A control without
evidence is reported as "no evidence", never as passed. See
docs/compliance.md.

Exit code 0 when every control passed (or does not apply), 1 when one
failed, 3 when none failed but one has no evidence: the report is written
in every case.`,
		Example: `  nestguard report compliance --framework pci-dss --from 2026-10-01 --to 2027-01-01
  nestguard report compliance --format html --output q4.html
  nestguard report compliance --format json --output q4.json && nestguard audit verify --key audit.pub --proof q4.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.formatSet = cmd.Flags().Changed("format")
			return a.runReportCompliance(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.framework, "framework", compliance.All, "sox, pci-dss, gdpr, finra, iso27001 or all")
	f.StringVar(&o.from, "from", "", "start of the period: RFC 3339, YYYY-MM-DD[ HH:MM[:SS]] (local time), or a duration before now (90d, 1y, 24h); default: the beginning of the audit log")
	f.StringVar(&o.to, "to", "", "end of the period (same forms as --from; default now): gaps since the last backup are measured to it")
	f.StringVar(&o.format, "format", "text", "text, json or html (one self-contained file)")
	f.StringVarP(&o.output, "output", "o", "", "write the report to this file instead of standard output")
	f.StringVar(&o.maxKeyAge, "max-key-age", "365d", "the age past which a key counts as not rotated (15m, 24h, 365d)")
	return cmd
}

// complianceJSON is what 'report compliance --format json' prints.
type complianceJSON struct {
	versioned
	*compliance.Report
}

func (a *app) runReportCompliance(ctx context.Context, o reportComplianceOptions) error {
	// Reads every entry of the log: cold, they wait on the disk.
	blockingProcs(a.getenv, audit.DefaultWorkers)
	framework, err := compliance.ParseFramework(o.framework)
	if err != nil {
		return &usageError{fmt.Errorf("--framework: %w", err)}
	}
	format := o.format
	if a.jsonOut {
		if format != "json" && (format != "text" || o.formatSet) { // text: the default, unless asked for
			return &usageError{fmt.Errorf("--json and --format %s ask for two formats: give one", o.format)}
		}
		format = "json"
	}
	if format != "text" && format != "json" && format != "html" {
		return &usageError{fmt.Errorf("--format %q: want text, json or html", o.format)}
	}
	maxKeyAge, err := class.ParseObjective(o.maxKeyAge)
	if err != nil {
		return &usageError{fmt.Errorf("--max-key-age: %w", err)}
	}
	now := time.Now()
	from, err := parseWhen(o.from, now)
	if err != nil {
		return err
	}
	to, err := parseWhen(o.to, now)
	if err != nil {
		return err
	}
	if to.IsZero() {
		to = now
	}
	if !from.IsZero() && !from.Before(to) {
		return &usageError{fmt.Errorf("--from %s is not before --to %s", fmtTime(from), fmtTime(to))}
	}
	if o.output != "" {
		// Before the evaluation, which reads the whole audit log.
		if err := checkWritable(o.output); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
	}
	var rep *compliance.Report
	err = a.withRepo(ctx, false, func(repo *repository.Repository) error {
		ev := &compliance.Evidence{From: from, To: to, MaxKeyAge: maxKeyAge}
		tree, vkey, err := a.complianceEvidence(ctx, repo, ev)
		if err != nil {
			return err
		}
		if rep, err = compliance.Evaluate(ev, framework, now); err != nil {
			return err
		}
		if tree != nil {
			return rep.Prove(tree, vkey, ev.Log.Records)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var out bytes.Buffer
	switch format {
	case "json":
		enc := json.NewEncoder(&out)
		enc.SetIndent("", "  ")
		err = enc.Encode(complianceJSON{current(), rep})
	case "html":
		err = rep.WriteHTML(&out)
	default:
		err = rep.WriteText(&out)
	}
	if err != nil {
		return err
	}
	if o.output != "" {
		if err := atomicfile.Write(o.output, out.Bytes(), 0o644); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
		if !a.quiet {
			fmt.Fprintf(a.stderr, "report written to %s: %s\n", o.output, strings.ToUpper(rep.Status))
		}
	} else if _, err := a.stdout.Write(out.Bytes()); err != nil {
		return err
	}
	switch rep.Status {
	case compliance.Fail:
		return fmt.Errorf("compliance report: %d controls failed", rep.Counts[compliance.Fail])
	case compliance.NoEvidence:
		return &partialError{fmt.Sprintf("compliance report: %d controls have no evidence", rep.Counts[compliance.NoEvidence])}
	}
	return nil
}

// complianceEvidence reads what a compliance report is evaluated against:
// snapshots, holds, key slots, the configuration and the storage's
// Object Lock, and the audit log, verified and read in one pass (tree of
// its newest checkpoint, with the verifier key vkey: nil when the log is
// empty or does not verify, and then the report proves nothing), into ev,
// whose period is set. Only the records the report needs are kept.
func (a *app) complianceEvidence(ctx context.Context, repo *repository.Repository, ev *compliance.Evidence) (*audit.Tree, string, error) {
	ev.Repository, ev.Config, ev.Classes = redactRepo(a.repo), repo.Config(), a.classes
	ev.Remote, ev.RedactRepo = strings.HasPrefix(a.repo, "s3://"), redactRepo
	snaps, unreadable, err := snapshot.ListFromStorage(ctx, repo)
	if err != nil {
		return nil, "", err
	}
	ev.Snapshots = snaps
	for _, e := range unreadable {
		var u *snapshot.Unreadable
		if errors.As(e, &u) {
			ev.Unreadable = append(ev.Unreadable, u.ID)
		}
		a.warn(e.Error())
	}
	holds, holdErrs, err := hold.List(ctx, repo)
	if err != nil {
		return nil, "", err
	}
	for _, e := range holdErrs {
		a.warn(e.Error())
	}
	ev.Holds = holds
	// Enforced is what the record says; the storage says whether it
	// holds (found by a hostile test: a hold whose legal holds were
	// never placed, or were cleared outside nestguard, passed).
	ev.HoldsCheck, ev.HoldsCheckErr = hold.CheckEnforced(ctx, repo, holds, 0)
	if ev.Keys, err = repo.ListKeys(ctx); err != nil {
		return nil, "", err
	}
	if l, ok := backend.As[backend.Locker](repo.Backend()); ok && repo.Config().ObjectLock != nil {
		on, err := l.LockEnabled(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("asking the storage whether it enforces Object Lock: %w", err)
		}
		ev.LockEnforced = &on
	}
	key, err := repo.AuditKey()
	if err != nil {
		return nil, "", err
	}
	defer key.Close()
	l := audit.New(repo.Backend(), key, repo.Config().ID)
	ev.Log.ID = l.ID()
	collect := func(pos uint64, r *audit.Record, err error) error {
		if err != nil {
			ev.Log.Damaged = append(ev.Log.Damaged, err.Error())
			return nil
		}
		if ev.Needs(r) {
			ev.Log.Records = append(ev.Log.Records, compliance.Record{Position: pos, Record: r})
		}
		return nil
	}
	vkey, err := l.StoredVerifier(ctx)
	if errors.Is(err, audit.ErrSigningKeyMissing) {
		// Its records still open (they are sealed under the audit key,
		// not the signing key): reported on, but nothing is proved.
		ev.Log.Problems = []string{err.Error()}
		return nil, "", l.Read(ctx, collect)
	}
	if err != nil || vkey == "" {
		return nil, "", err
	}
	v, err := audit.ParseVerifier(vkey)
	if err != nil {
		return nil, "", err
	}
	// One pass: verified as 'audit verify' verifies it, and read. A log
	// that does not verify is still read, to report on, but nothing it
	// says can be proved.
	vr, tree, err := l.VerifyRead(ctx, audit.VerifyOptions{Verifier: v}, collect)
	if err != nil {
		return nil, "", err
	}
	ev.Log.Problems = vr.Problems
	if tree == nil {
		return nil, "", nil
	}
	ev.Log.Checkpoint = vr.Newest
	return tree, vkey, nil
}

// checkWritable reports why a file could not be written at path (a
// missing or read-only directory, a directory in its place), by creating
// and removing a temporary file beside it.
func checkWritable(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory: name a file", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-check-")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
