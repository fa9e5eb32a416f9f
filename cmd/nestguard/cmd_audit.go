package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/nestguard/nestguard/internal/audit"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/location"
	"github.com/nestguard/nestguard/internal/compliance"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/repository"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "The repository's tamper-evident audit log: show, verify, export checkpoints",
		Long: `Every command that reads or changes what the repository protects appends a
record to the repository's audit log: who (OS user, host, key slot), what
(command and options, never a secret), on what, when, the outcome and what
it wrote. The log is a Merkle tree (RFC 6962) whose checkpoints are signed
with the repository's Ed25519 audit key; an auditor checks it with the
verifier key ('audit key') alone, without the passphrase. pg archive-wal
and pg restore-wal are recorded in batches. See docs/audit.md.`,
	}
	for _, c := range []*cobra.Command{a.auditLogCommand(), a.auditVerifyCommand(), a.auditCheckpointCommand(), a.auditKeyCommand()} {
		cmd.AddCommand(annotate(c, auditSkip))
	}
	return annotate(cmd, auditSkip)
}

type auditLogOptions struct {
	since, until, who string
}

func (a *app) auditLogCommand() *cobra.Command {
	var o auditLogOptions
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Show the audit records",
		Long: `Show the records of the repository's audit log, oldest first: position,
time, user@host, command, outcome, arguments, and what failed. With --json,
every field of each record. Needs the passphrase (records are encrypted).
A record that does not open is shown as damaged, records missing between
two entries (one deleted) as missing, and the exit code is 1; 'audit
verify' says whether the log was tampered with.`,
		Example: `  nestguard audit log --since 2026-12-01 --who alice
  nestguard audit log --since 24h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runAuditLog(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.since, "since", "", "only records at or after this time: RFC 3339, YYYY-MM-DD[ HH:MM[:SS]] (local time), or a duration before now (24h, 90d, 1y)")
	f.StringVar(&o.until, "until", "", "only records before this time (same forms as --since)")
	f.StringVar(&o.who, "who", "", "only records of this OS user, user@host, host, or key slot (id prefix)")
	return cmd
}

// parseWhen parses a --since/--until (or --from/--to) value: a time, or
// a duration before now, either Go's (90m, 24h) or a calendar one as
// forget's --keep-within takes (90d, 1y, 1y6m: there m is months). A
// negative duration, which would count forward, is refused.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	negative := &usageError{fmt.Errorf("time %q: a duration counts back from now, so it cannot be negative; give a time (RFC 3339 or YYYY-MM-DD) for one after now", s)}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, negative
		}
		return now.Add(-d), nil
	}
	rest, neg := strings.CutPrefix(s, "-")
	if d, err := policy.ParseDuration(rest); err == nil {
		if neg {
			return time.Time{}, negative
		}
		return d.Before(now), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, &usageError{fmt.Errorf("time %q: want RFC 3339, YYYY-MM-DD[ HH:MM[:SS]] or a duration before now such as 24h or 90d", s)}
}

func matchWho(r *audit.Record, who string) bool {
	return who == "" || r.User == who || r.Host == who || r.User+"@"+r.Host == who ||
		(r.KeySlot != "" && strings.HasPrefix(r.KeySlot, who))
}

// auditLogJSON is what 'audit log --json' prints.
type auditLogJSON struct {
	versioned
	Log     string            `json:"log"`
	Records []auditRecordJSON `json:"records"`
	Damaged []string          `json:"damaged,omitempty"`
	// Unfinished are the positions of Started records that no record
	// names as its own: commands killed before they finished.
	Unfinished []uint64 `json:"unfinished,omitempty"`
}

type auditRecordJSON struct {
	Position uint64 `json:"position"`
	*audit.Record
}

// MarshalJSON puts position first in the record's own encoding: the
// embedded Record's MarshalJSON, promoted, would otherwise drop it.
func (r auditRecordJSON) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(r.Record)
	if err != nil {
		return nil, err
	}
	if len(b) < 2 || b[0] != '{' {
		return nil, fmt.Errorf("audit record %d: encoded as %q, not an object", r.Position, b)
	}
	head := fmt.Sprintf(`{"position":%d`, r.Position)
	if string(b) == "{}" {
		return []byte(head + "}"), nil
	}
	return append([]byte(head+","), b[1:]...), nil
}

func (a *app) runAuditLog(ctx context.Context, o auditLogOptions) error {
	// Reads every entry of the log: cold, they wait on the disk.
	blockingProcs(a.getenv, audit.DefaultWorkers)
	now := time.Now()
	since, err := parseWhen(o.since, now)
	if err != nil {
		return err
	}
	until, err := parseWhen(o.until, now)
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		return &usageError{fmt.Errorf("--since %s is not before --until %s: no record can match", fmtTime(since), fmtTime(until))}
	}
	return a.withRepo(ctx, false, func(repo *repository.Repository) error {
		key, err := repo.AuditKey()
		if err != nil {
			return err
		}
		defer key.Close()
		l := audit.New(repo.Backend(), key, repo.Config().ID)
		doc := auditLogJSON{versioned: current(), Log: l.ID(), Records: []auditRecordJSON{}}
		// next is the position the next record must have; unknown after
		// a damaged entry, whose records are passed as one error.
		next, known := uint64(0), true
		// started are the Started records no record has named yet.
		started := make(map[uint64]*audit.Record)
		err = l.Read(ctx, func(pos uint64, r *audit.Record, err error) error {
			if known && pos != next {
				var gap string
				if pos > next {
					gap = fmt.Sprintf("records %d to %d are missing: an entry was deleted", next, pos-1)
				} else {
					gap = fmt.Sprintf("record %d comes again after record %d: entries overlap, one was planted", pos, next-1)
				}
				doc.Damaged = append(doc.Damaged, gap)
				a.printf("%6d  MISSING: %s\n", min(pos, next), gap)
			}
			next, known = pos+1, err == nil
			if err != nil {
				doc.Damaged = append(doc.Damaged, err.Error())
				a.printf("%6d  DAMAGED: %s\n", pos, printable(err.Error()))
				return nil
			}
			if r.Outcome == audit.Started {
				started[pos] = r
			} else if r.IntentRecord != nil {
				delete(started, *r.IntentRecord)
			}
			if (!since.IsZero() && r.Time.Before(since)) || (!until.IsZero() && !r.Time.Before(until)) || !matchWho(r, o.who) {
				return nil
			}
			doc.Records = append(doc.Records, auditRecordJSON{pos, r})
			a.printf("%s\n", formatRecord(pos, r))
			return nil
		})
		if err != nil {
			return err
		}
		for pos := range started {
			doc.Unfinished = append(doc.Unfinished, pos)
		}
		slices.Sort(doc.Unfinished)
		for _, pos := range doc.Unfinished {
			r := started[pos]
			a.printf("%6d  UNFINISHED: %s at %s by %s@%s started removing and recorded no outcome (killed, crashed, or still running)\n",
				pos, printable(r.Command), fmtTime(r.Time), printable(r.User), printable(r.Host))
		}
		if a.jsonOut {
			if err := a.printJSON(doc); err != nil {
				return err
			}
		}
		a.noteOtherLogs(ctx, repo.Backend(), l.ID())
		if len(doc.Damaged) > 0 {
			return fmt.Errorf("the audit log is damaged (%d problems, shown above): run 'nestguard audit verify'", len(doc.Damaged))
		}
		return nil
	})
}

// formatRecord is a record as 'audit log' shows it, its text escaped
// (printable): arguments and messages are what users and files said.
func formatRecord(pos uint64, r *audit.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6d  %s  %s@%s  %s  %s", pos, fmtTime(r.Time), printable(r.User), printable(r.Host), printable(r.Command), printable(r.Outcome))
	if len(r.Args) > 0 {
		fmt.Fprintf(&b, "  %s", printable(strings.Join(r.Args, " ")))
	}
	if len(r.Batch) > 0 {
		fmt.Fprintf(&b, "  (%d calls: %s .. %s)", len(r.Batch), printable(r.Batch[0].Arg), printable(r.Batch[len(r.Batch)-1].Arg))
		for _, it := range r.Batch {
			if it.Outcome != audit.Success {
				fmt.Fprintf(&b, "\n          %s %s: %s", printable(it.Arg), printable(it.Outcome), printable(it.Message))
			}
		}
	} else if r.Message != "" {
		fmt.Fprintf(&b, "  -- %s", printable(r.Message))
	}
	if r.IntentRecord != nil {
		fmt.Fprintf(&b, "  (started: record %d)", *r.IntentRecord)
	}
	if len(r.Intent) > 0 {
		fmt.Fprintf(&b, "\n          about to remove: %s", printable(strings.Join(r.Intent, ", ")))
	}
	if len(r.Wrote) > 0 {
		fmt.Fprintf(&b, "\n          wrote: %s", printable(strings.Join(r.Wrote, ", ")))
	}
	return b.String()
}

// noteOtherLogs tells, on stderr, of logs copied from other repositories.
func (a *app) noteOtherLogs(ctx context.Context, be backend.Backend, own string) {
	ids, err := audit.LogIDs(ctx, be)
	if err != nil {
		return
	}
	for _, id := range ids {
		if id != own {
			a.warn(fmt.Sprintf("this repository also holds the audit log of repository %q (brought by copy): its records open with that repository's passphrase; 'audit verify --key' checks it", id))
		}
	}
}

type auditVerifyOptions struct {
	checkpoints   []string
	proofs        []string
	keys          []string
	allSignatures bool
	from          string
}

func (a *app) auditVerifyCommand() *cobra.Command {
	var o auditVerifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log: nothing deleted, changed, reordered, forged or rolled back",
		Long: `Check the audit log with the verifier key: the entries follow each other
without gaps, every checkpoint is signed by the audit key, every record is
in the tree of the newest checkpoint and every checkpoint is consistent
with the one before. With --checkpoint, each checkpoint exported earlier
('audit checkpoint > FILE') must be one the log passed through: one ahead
of the log means the repository was rolled back.

With --key (the verifier key from 'audit key', or a file holding it;
repeatable, one per log) no passphrase is needed. --from-checkpoint
makes it incremental: only the records after a checkpoint verified before
are read: an auditor needs only
read access to the storage. Without --key the repository is opened with
the passphrase and its own log checked with its own key. Exit code 1 when
any check fails, each problem listed.

With --proof REPORT.json (a 'report compliance --format json' document),
the report's evidence is checked too: its checkpoint is signed by the key
and is one the log passed through, and the inclusion proof of every audit
record the report cites gives the checkpoint's root.`,
		Example: `  nestguard audit verify --key "$(cat audit.pub)" --checkpoint 2026-12-01.cp
  nestguard audit verify`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runAuditVerify(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.checkpoints, "checkpoint", nil, "a checkpoint exported earlier that the log must extend (repeatable)")
	f.StringArrayVar(&o.proofs, "proof", nil, "a compliance report in JSON ('report compliance --format json'): its checkpoint must be signed and one the log passed through, and every record it cites proved included in it (repeatable)")
	f.StringVar(&o.from, "from-checkpoint", "", "verify incrementally: only the records after this checkpoint, which the auditor verified before (its signature is checked, and the log must still end an entry there with its root)")
	f.BoolVar(&o.allSignatures, "all-signatures", false, "check the signature of every checkpoint, not only the newest (which already binds every record before it; about 100 µs per entry)")
	f.StringArrayVar(&o.keys, "key", envList(a.getenv("NESTGUARD_AUDIT_KEY")), "verifier key of the log, or a file holding it (repeatable; env NESTGUARD_AUDIT_KEY); without it the passphrase opens the repository")
	return cmd
}

func envList(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

// Bounds of the files 'audit verify' reads: a checkpoint is a few hundred
// bytes, a compliance report's JSON a few MiB at most.
const (
	maxCheckpointFile = 64 << 10
	maxReportFile     = 256 << 20
)

// readSmallFile reads file, refusing one larger than limit (a device, a
// wrong file) rather than reading it all into memory.
func readSmallFile(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes: not what was asked for", limit)
	}
	return b, nil
}

// readVerifier parses a --key value: a verifier key, or a file holding one.
func readVerifier(s string) (note.Verifier, error) {
	// A file, if one of that name exists: its name may hold a '+' too.
	if fi, serr := os.Stat(s); serr == nil && fi.Mode().IsRegular() || !strings.Contains(s, "+") {
		b, err := readSmallFile(s, maxCheckpointFile)
		if err != nil {
			return nil, &usageError{fmt.Errorf("--key %q is neither a verifier key nor a readable file: %w", s, err)}
		}
		s = string(b)
	}
	v, err := audit.ParseVerifier(s)
	if err != nil {
		return nil, &usageError{err}
	}
	return v, nil
}

// auditVerifyJSON is what 'audit verify --json' prints.
type auditVerifyJSON struct {
	versioned
	Logs []auditLogReportJSON `json:"logs"`
	OK   bool                 `json:"ok"`
	// Problems are those of the given files (checkpoints, reports) that
	// could not be read or are not signed by a given key.
	Problems []string `json:"problems"`
	// Proved counts the records of the --proof reports whose inclusion
	// proofs verified.
	Proved int `json:"proved_records,omitempty"`
}

type auditLogReportJSON struct {
	Log      string   `json:"log"`
	Entries  int      `json:"entries"`
	Records  uint64   `json:"records"`
	Size     uint64   `json:"checkpoint_size"`
	Root     string   `json:"checkpoint_root,omitempty"`
	Exported int      `json:"exported_checkpoints"`
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
}

// verifyTarget is a log to verify with its key.
type verifyTarget struct {
	logID string
	v     note.Verifier
}

func (a *app) runAuditVerify(ctx context.Context, o auditVerifyOptions) error {
	// Reads every entry of the log: cold, they wait on the disk.
	blockingProcs(a.getenv, audit.DefaultWorkers)
	if err := a.needRepo(); err != nil {
		return err
	}
	var verifiers []note.Verifier
	for _, k := range o.keys {
		v, err := readVerifier(k)
		if err != nil {
			return err
		}
		verifiers = append(verifiers, v)
	}
	exported := make(map[string][]*audit.Checkpoint)
	var problems []string
	from := make(map[string]*audit.Checkpoint)
	proved := 0
	// claims, when the passphrase opened the repository, checks what
	// reports say of the records they cite against the records, and
	// returns the problems found.
	var claims func([]citingReport) []string
	readExported := func(targets []verifyTarget) {
		files := o.checkpoints
		if o.from != "" {
			files = append(slices.Clone(files), o.from)
		}
		for _, file := range files {
			b, err := readSmallFile(file, maxCheckpointFile)
			if err != nil {
				problems = append(problems, fmt.Sprintf("checkpoint %s: %v", file, err))
				continue
			}
			cp, err := audit.ParseUnverified(b)
			if err != nil {
				problems = append(problems, fmt.Sprintf("checkpoint %s: %v", file, err))
				continue
			}
			found := false
			for _, t := range targets {
				if cp.LogID() != t.logID {
					continue
				}
				found = true
				if cp, err = audit.OpenCheckpoint(b, t.v); err != nil {
					problems = append(problems, fmt.Sprintf("checkpoint %s: %v", file, err))
					continue
				}
				if file == o.from {
					from[t.logID] = cp
				} else {
					exported[t.logID] = append(exported[t.logID], cp)
				}
			}
			switch {
			case found:
			case len(verifiers) == 0:
				// The passphrase opened one repository: its own log.
				problems = append(problems, fmt.Sprintf("checkpoint %s is of %q, not of this repository's log (%s): check it against the repository it was exported from", file, cp.Origin, targets[0].logID))
			default:
				problems = append(problems, fmt.Sprintf("checkpoint %s is of %q: no verifier key given for that log", file, cp.Origin))
			}
		}
		var reports []citingReport
		for _, file := range o.proofs {
			cp, ae, err := checkReportProofs(file, targets)
			if err != nil {
				problems = append(problems, fmt.Sprintf("report %s: %v", file, err))
				continue
			}
			exported[cp.LogID()] = append(exported[cp.LogID()], cp)
			proved += len(ae.Records)
			reports = append(reports, citingReport{file, ae})
		}
		if claims != nil && len(reports) > 0 {
			problems = append(problems, claims(reports)...)
		}
	}
	verifyAll := func(be backend.Backend, targets []verifyTarget) error {
		readExported(targets)
		doc := auditVerifyJSON{versioned: current(), OK: true}
		for _, p := range problems {
			a.printf("problem: %s\n", printable(p))
		}
		for _, t := range targets {
			rep, err := audit.Verify(ctx, be, t.logID, audit.VerifyOptions{Verifier: t.v, Exported: exported[t.logID], AllSignatures: o.allSignatures, From: from[t.logID]})
			if err != nil {
				return err
			}
			doc.Logs = append(doc.Logs, reportJSON(rep, len(exported[t.logID])))
			a.printReport(rep, len(exported[t.logID]))
			if !rep.OK() {
				doc.OK = false
			}
		}
		doc.OK = doc.OK && len(problems) == 0
		doc.Problems = append([]string{}, problems...)
		if len(o.proofs) > 0 {
			doc.Proved = proved
			if len(problems) == 0 {
				a.printf("%d records cited by %d reports: each proved included in the report's checkpoint, which the log passed through", proved, len(o.proofs))
				if claims != nil {
					a.printf("; what the reports say of each is what the record says\n")
				} else {
					a.printf(" (what the reports say of them is checked only with the passphrase: records are sealed)\n")
				}
			}
		}
		if a.jsonOut {
			if err := a.printJSON(doc); err != nil {
				return err
			}
		}
		if !doc.OK {
			logsOK := !slices.ContainsFunc(doc.Logs, func(l auditLogReportJSON) bool { return !l.OK })
			if logsOK {
				return fmt.Errorf("%d of the checkpoints and reports given are unreadable, not signed by the audit key, or not of this log (see the problems above); the audit log itself verifies", len(problems))
			}
			return errors.New("the audit log does not verify (see above)")
		}
		return nil
	}
	if len(verifiers) == 0 {
		return keyHint(a.withRepo(ctx, false, func(repo *repository.Repository) error {
			key, err := repo.AuditKey()
			if err != nil {
				return err
			}
			defer key.Close()
			l := audit.New(repo.Backend(), key, repo.Config().ID)
			vkey, err := l.StoredVerifier(ctx)
			if err != nil {
				return err
			}
			if vkey == "" {
				return fmt.Errorf("repository %s has no audit log yet (no command has been recorded)", a.repo)
			}
			v, err := audit.ParseVerifier(vkey)
			if err != nil {
				return err
			}
			a.noteOtherLogs(ctx, repo.Backend(), l.ID())
			claims = func(reports []citingReport) []string {
				// The log is read once for every report's records.
				cited := make(map[uint64]*audit.Record)
				for _, rp := range reports {
					if rp.ae.Log == l.ID() {
						for _, r := range rp.ae.Records {
							cited[r.Position] = nil
						}
					}
				}
				if len(cited) == 0 {
					return nil
				}
				err := l.Read(ctx, func(pos uint64, r *audit.Record, err error) error {
					if _, ok := cited[pos]; ok && err == nil {
						cited[pos] = r
					}
					return nil
				})
				if err != nil {
					return []string{fmt.Sprintf("reading the records the reports cite: %v", err)}
				}
				var problems []string
				for _, rp := range reports {
					if rp.ae.Log != l.ID() {
						continue
					}
					records := make(map[uint64]*audit.Record, len(rp.ae.Records))
					for _, r := range rp.ae.Records {
						if rec := cited[r.Position]; rec != nil {
							records[r.Position] = rec
						}
					}
					for _, p := range rp.ae.CheckClaims(records) {
						problems = append(problems, fmt.Sprintf("report %s: %s", rp.file, p))
					}
				}
				return problems
			}
			return verifyAll(repo.Backend(), []verifyTarget{{l.ID(), v}})
		}))
	}
	be, err := location.Open(ctx, a.repo, a.locationOptions())
	if err != nil {
		return err
	}
	defer be.Close()
	targets, err := matchLogs(ctx, be, verifiers, a.repo)
	if err != nil {
		return err
	}
	return verifyAll(be, targets)
}

// citingReport is a compliance report given to 'audit verify --proof'
// (file), with its audit evidence.
type citingReport struct {
	file string
	ae   *compliance.AuditEvidence
}

// keyHint adds to a missing passphrase what an auditor, who has none,
// gives instead.
func keyHint(err error) error {
	if errors.Is(err, errNoPassphrase) {
		return fmt.Errorf("%w; without the passphrase, give the verifier key ('nestguard audit key' prints it) with --key or NESTGUARD_AUDIT_KEY", err)
	}
	return err
}

// matchLogs pairs each verifier key with the stored logs it signs.
func matchLogs(ctx context.Context, be backend.Backend, verifiers []note.Verifier, repo string) ([]verifyTarget, error) {
	ids, err := audit.LogIDs(ctx, be)
	if err != nil {
		return nil, err
	}
	var targets []verifyTarget
	for _, v := range verifiers {
		n := 0
		for _, id := range ids {
			if audit.KeyName(id) == v.Name() {
				targets = append(targets, verifyTarget{id, v})
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("%s holds no audit log signed by key %s (logs found: %d): wrong repository or key, or every entry of the log was deleted", repo, v.Name(), len(ids))
		}
	}
	return targets, nil
}

func reportJSON(rep *audit.Report, exported int) auditLogReportJSON {
	j := auditLogReportJSON{Log: rep.LogID, Entries: rep.Entries, Records: rep.Records, Exported: exported, OK: rep.OK(), Problems: rep.Problems}
	if j.Problems == nil {
		j.Problems = []string{}
	}
	if rep.Newest != nil {
		j.Size, j.Root = rep.Newest.Size, hex.EncodeToString(rep.Newest.Root)
	}
	return j
}

func (a *app) printReport(rep *audit.Report, exported int) {
	a.printf("audit log %s: %d records in %d entries", rep.LogID, rep.Records, rep.Entries)
	if rep.Resumed > 0 {
		a.printf(" (%d read: incremental from the checkpoint of size %d)", rep.Records-rep.Resumed, rep.Resumed)
	}
	if rep.Newest != nil {
		a.printf(", newest checkpoint: size %d, root %x", rep.Newest.Size, rep.Newest.Root)
	}
	a.printf("\n")
	for _, p := range rep.Problems {
		a.printf("  problem: %s\n", printable(p))
	}
	if rep.OK() {
		a.printf("  every record is in the newest checkpoint, every checkpoint signed and consistent with the one before")
		if exported > 0 {
			a.printf("; the log extends the %d exported checkpoints", exported)
		}
		a.printf(": OK\n")
	}
}

func (a *app) auditCheckpointCommand() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the newest signed checkpoint of the audit log, for the auditor to keep",
		Long: `Print the newest checkpoint of the audit log (tree size and root, signed
by the audit key) as a signed note. Keep the output where the operator
cannot change it: 'audit verify --checkpoint FILE' later proves that the
log still extends it, and so detects a rollback of the whole repository.
With --key, no passphrase is needed.`,
		Example: `  nestguard audit checkpoint > /mnt/auditor/$(date +%F).cp`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runAuditCheckpoint(cmd.Context(), key)
		},
	}
	cmd.Flags().StringVar(&key, "key", a.getenv("NESTGUARD_AUDIT_KEY"), "verifier key of the log, or a file holding it (env NESTGUARD_AUDIT_KEY); without it the passphrase opens the repository")
	return cmd
}

func (a *app) runAuditCheckpoint(ctx context.Context, key string) error {
	if err := a.needRepo(); err != nil {
		return err
	}
	show := func(cp *audit.Checkpoint) error {
		if cp == nil {
			return fmt.Errorf("the audit log of %s is empty", a.repo)
		}
		if a.jsonOut {
			return a.printJSON(auditCheckpointJSON{current(), strings.TrimPrefix(cp.Origin, "nestguard audit log "), cp.Size,
				hex.EncodeToString(cp.Root), string(cp.Note)})
		}
		_, err := a.stdout.Write(cp.Note)
		return err
	}
	if key == "" {
		return keyHint(a.withRepo(ctx, false, func(repo *repository.Repository) error {
			k, err := repo.AuditKey()
			if err != nil {
				return err
			}
			defer k.Close()
			cp, err := audit.New(repo.Backend(), k, repo.Config().ID).Checkpoint(ctx)
			if err != nil {
				return err
			}
			return show(cp)
		}))
	}
	v, err := readVerifier(key)
	if err != nil {
		return err
	}
	be, err := location.Open(ctx, a.repo, a.locationOptions())
	if err != nil {
		return err
	}
	defer be.Close()
	targets, err := matchLogs(ctx, be, []note.Verifier{v}, a.repo)
	if err != nil {
		return err
	}
	cp, err := audit.Newest(ctx, be, targets[0].logID, v)
	if err != nil {
		return err
	}
	return show(cp)
}

func (a *app) auditKeyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "key",
		Short: "Print the audit log's verifier key (public), for the auditor",
		Long: `Print the verifier key of the repository's audit log: the public half of
its Ed25519 signing key, in the note format ("name+hash+key"). Give it to
the auditor out of band; with it, 'audit verify --key' and 'audit
checkpoint --key' need no passphrase. Creates the signing key if the
repository has none yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withRepo(cmd.Context(), false, func(repo *repository.Repository) error {
				k, err := repo.AuditKey()
				if err != nil {
					return err
				}
				defer k.Close()
				vkey, err := audit.New(repo.Backend(), k, repo.Config().ID).Verifier(cmd.Context())
				if err != nil {
					return err
				}
				if a.jsonOut {
					return a.printJSON(auditKeyJSON{current(), vkey})
				}
				_, err = fmt.Fprintln(a.stdout, vkey)
				return err
			})
		},
	}
}

// checkReportProofs reads the evidence section of a compliance report in
// JSON, checks its checkpoint's signature with the key of its log among
// targets and every inclusion proof against it, and returns the
// checkpoint (which the log must then have passed through) and the
// evidence, whose records were proved.
func checkReportProofs(file string, targets []verifyTarget) (*audit.Checkpoint, *compliance.AuditEvidence, error) {
	b, err := readSmallFile(file, maxReportFile)
	if err != nil {
		return nil, nil, err
	}
	var doc struct {
		Audit *compliance.AuditEvidence `json:"audit"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a compliance report in JSON: %w", err)
	}
	if doc.Audit == nil {
		return nil, nil, errors.New("it has no audit evidence (its audit log was empty or did not verify when it was made)")
	}
	note := []byte(doc.Audit.Checkpoint)
	cp, err := audit.ParseUnverified(note)
	if err != nil {
		return nil, nil, err
	}
	var t *verifyTarget
	for i := range targets {
		if targets[i].logID == cp.LogID() {
			t = &targets[i]
		}
	}
	if t == nil {
		return nil, nil, fmt.Errorf("its checkpoint is of %q: no verifier key given for that log", cp.Origin)
	}
	if cp, err = audit.OpenCheckpoint(note, t.v); err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, r := range doc.Audit.Records {
		if r.Proof == nil {
			errs = append(errs, fmt.Errorf("record %d has no proof", r.Position))
			continue
		}
		if r.Proof.Position != r.Position {
			errs = append(errs, fmt.Errorf("record %d carries the proof of record %d", r.Position, r.Proof.Position))
			continue
		}
		if err := audit.VerifyInclusion(cp, r.Proof); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return cp, doc.Audit, nil
}
