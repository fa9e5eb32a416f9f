package main

// The audit hook: every command that unlocks a repository leaves a record
// in its audit log (docs/audit.md). It is wired here, in the dispatch, so
// that a new command is recorded without doing anything: openRepository
// registers each repository it opens (watching its backend to learn what
// the command stores), and run appends the records once the command has
// returned, with its outcome.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nestguard/nestguard/internal/audit"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/repository"
)

// Command annotations of the audit hook.
const (
	// auditSkip marks commands that are not recorded: the audit
	// commands themselves, so that reading the log does not grow it.
	auditSkip = "nestguard-audit-skip"
	// auditBatch marks commands PostgreSQL runs once per WAL segment:
	// their calls are spooled and recorded in batches.
	auditBatch = "nestguard-audit-batch"
)

// auditRun is the running command, as its audit records will tell it.
type auditRun struct {
	cmd     *cobra.Command
	args    []string
	started time.Time
	targets []*auditTarget
	// spooled: the command spooled its work's items itself (the
	// background WAL archiver, spoolAudit), so its run adds none.
	spooled bool
}

// auditTarget is a repository the command opened, and what is needed to
// append to its log after the repository is closed.
type auditTarget struct {
	be      backend.Backend // the store, not the watched wrapper the command used
	written []*audit.Written
	// others are further opens of the same repository (copy --continuous
	// reopening): one record covers them, and their stores are closed
	// with be.
	others  []backend.Backend
	key     *crypto.Key // the audit key
	logID   string
	keySlot string
	loc     string
	// intent is the position of the command's Started record in this
	// log, once appended (intend).
	mu     sync.Mutex
	intent *uint64
}

// markAudit annotates the commands whose recording differs from the
// default (recorded, one record per run).
func markAudit(root *cobra.Command) {
	for _, path := range [][]string{{"pg", "archive-wal"}, {"pg", "restore-wal"}} {
		if c, _, err := root.Find(path); err == nil && c != root {
			annotate(c, auditBatch)
		}
	}
}

func annotate(c *cobra.Command, key string) *cobra.Command {
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[key] = "true"
	return c
}

// startAudit notes the command about to run (PersistentPreRunE).
func (a *app) startAudit(cmd *cobra.Command, args []string) {
	if cmd.Annotations[auditSkip] != "" {
		return
	}
	a.audit = &auditRun{cmd: cmd, args: args, started: time.Now()}
}

// watch returns the backend a command should open its repository on: be
// itself when nothing is audited, else be watched (audit.Watch), whose
// Close leaves be open for the record.
func (a *app) watch(be backend.Backend) (backend.Backend, *audit.Written) {
	if a.audit == nil {
		return be, nil
	}
	return audit.Watch(be)
}

// audited registers repository r, opened on be (watched as written), as a
// target of the command's record. be is then closed by finishAudit.
func (a *app) audited(r *repository.Repository, be backend.Backend, written *audit.Written, loc string) error {
	if a.audit == nil || written == nil {
		return nil
	}
	for _, t := range a.audit.targets {
		if t.logID == r.Config().ID {
			t.written = append(t.written, written)
			t.others = append(t.others, be)
			a.gate(t, written)
			return nil
		}
	}
	key, err := r.AuditKey()
	if err != nil {
		return err
	}
	t := &auditTarget{be: be, written: []*audit.Written{written}, key: key,
		logID: r.Config().ID, keySlot: r.KeyID(), loc: redactRepo(loc)}
	a.audit.targets = append(a.audit.targets, t)
	a.gate(t, written)
	return nil
}

// gate makes the first removal through written wait for the command's
// Started record in t's log (docs/audit.md, "Removals"), naming the first
// object removed when the command did not say before what it removes
// (intend). Batched commands remove nothing and are not gated.
func (a *app) gate(t *auditTarget, written *audit.Written) {
	run := a.audit
	if run.cmd.Annotations[auditBatch] != "" {
		return
	}
	written.BeforeRemove(func(ctx context.Context, first backend.Handle) error {
		return a.intendIn(ctx, run, t, []string{"-" + first.String()})
	})
}

// intend appends to the log of every repository the command opened a
// Started record saying what the command is about to remove, before it
// removes anything: a command killed partway then leaves "started" with
// no outcome in the log, not nothing. A log that has the command's
// Started record already is left alone. When one cannot be appended the
// command must remove nothing, and the error says so.
func (a *app) intend(ctx context.Context, what []string) error {
	run := a.audit
	if run == nil {
		return nil
	}
	for _, t := range run.targets {
		if err := a.intendIn(ctx, run, t, what); err != nil {
			return err
		}
	}
	return nil
}

func (a *app) intendIn(ctx context.Context, run *auditRun, t *auditTarget, what []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.intent != nil {
		return nil
	}
	rec := a.auditRecord(run, t, audit.Started, "")
	rec.Intent = what
	rec.IntentRecord = nil
	cp, err := audit.New(t.be, t.key, t.logID).Append(ctx, rec)
	if err != nil {
		return fmt.Errorf("the audit log of %s does not take the record of what this %s is about to remove, so it removes nothing (make the repository's audit/ writable, or see 'nestguard audit verify'): %w", t.loc, rec0(run), err)
	}
	pos := cp.Size - 1
	t.intent = &pos
	a.auditTestHook("intent")
	return nil
}

// auditTestHook is the end-to-end tests' hook into the audit records, only
// in a build with the nestguard_testhooks tag, as pruneTestHook is into a
// prune: NESTGUARD_TEST_AUDIT_AT=intent:kill makes the process kill itself with
// SIGKILL once its Started record is stored, before it removes anything.
func (a *app) auditTestHook(point string) {
	if testHooks && a.getenv("NESTGUARD_TEST_AUDIT_AT") == point+":kill" {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

// release closes be unless an audit target owns it.
func (a *app) release(be backend.Backend) {
	if a.audit != nil {
		for _, t := range a.audit.targets {
			if t.be == be || slices.Contains(t.others, be) {
				return
			}
		}
	}
	be.Close()
}

// finishAudit appends the command's record to the log of every repository
// it opened and returns the command's error, joined with any failure to
// append: a command whose record could not be stored does not exit 0.
func (a *app) finishAudit(ctx context.Context, err error) error {
	run := a.audit
	if run == nil || len(run.targets) == 0 {
		return err
	}
	a.audit = nil
	// A command stopped by a signal is recorded too.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	outcome, msg := outcomeOf(err)
	var errs []error
	for _, t := range run.targets {
		var aerr error
		if run.cmd.Annotations[auditBatch] != "" {
			aerr = a.appendBatched(ctx, run, t, outcome, msg)
		} else {
			_, aerr = audit.New(t.be, t.key, t.logID).Append(ctx, a.auditRecord(run, t, outcome, msg))
		}
		switch {
		case aerr == nil:
		case (errors.Is(aerr, fs.ErrPermission) || errors.Is(aerr, syscall.EROFS)) && !t.changed():
			// Read-only storage (a restore from a write-protected
			// copy): the command's work stands, unrecorded, and says so.
			// Only when it changed nothing: storage that took the
			// command's writes or removals but refuses its record (a
			// read-only audit/, a policy denying writes to audit/*)
			// is an audit failure like any other.
			a.warn(fmt.Sprintf("audit: %s refuses writes, so this %s is not recorded in its audit log: %v", t.loc, rec0(run), aerr))
		case errors.Is(aerr, fs.ErrPermission) || errors.Is(aerr, syscall.EROFS):
			w := t.wrote()
			if len(w) > 3 {
				w = append(w[:3], fmt.Sprintf("%d more", len(w)-3))
			}
			errs = append(errs, fmt.Errorf("%s stored or removed objects for this command (%s) but refuses its audit record; make the repository's audit/ writable: %w", t.loc, strings.Join(w, ", "), aerr))
		default:
			errs = append(errs, fmt.Errorf("%s: %w", t.loc, aerr))
		}
		t.key.Close()
		t.be.Close()
		for _, be := range t.others {
			be.Close()
		}
	}
	if len(errs) == 0 {
		return err
	}
	aerr := fmt.Errorf("the audit record of this %s was not stored (what the command reported it did, it did): %w", rec0(run), errors.Join(errs...))
	if isRestoreWAL(run.cmd) {
		// PostgreSQL reads restore-wal's exit code as what became of the
		// WAL file: 1 as "not archived", which ends recovery early. The
		// file delivered (or not) is what the code must say.
		a.warn(aerr.Error())
		return err
	}
	if err == nil {
		return aerr
	}
	return errors.Join(err, aerr)
}

func rec0(run *auditRun) string { return strings.Join(commandNames(run.cmd), " ") }

// wrote lists what the command stored through every open of t.
func (t *auditTarget) wrote() []string {
	var out []string
	for _, w := range t.written {
		out = append(out, w.List()...)
	}
	return out
}

// changed reports whether the command stored or removed anything in t
// other than its locks.
func (t *auditTarget) changed() bool {
	for _, w := range t.wrote() {
		if !strings.HasPrefix(strings.TrimPrefix(w, "-"), string(backend.LockFile)+"/") {
			return true
		}
	}
	return false
}

// outcomeOf maps a command's error to a record's outcome, as exitCode maps
// it to an exit code.
func outcomeOf(err error) (string, string) {
	if err == nil {
		return audit.Success, ""
	}
	var pe *partialError
	if errors.As(err, &pe) {
		return audit.Partial, err.Error()
	}
	return audit.Failed, err.Error()
}

// auditRecord is the record of run in target t.
func (a *app) auditRecord(run *auditRun, t *auditTarget, outcome, msg string) *audit.Record {
	host, _ := os.Hostname()
	return &audit.Record{
		Time:         run.started.UTC(),
		User:         osUser(a.getenv),
		Host:         host,
		KeySlot:      t.keySlot,
		Command:      strings.Join(commandNames(run.cmd), " "),
		Options:      effectiveOptions(run.cmd),
		Repository:   t.loc,
		Args:         run.args,
		Outcome:      outcome,
		Message:      msg,
		Wrote:        t.wrote(),
		Duration:     time.Since(run.started),
		IntentRecord: t.intent,
	}
}

func osUser(getenv func(string) string) string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	if u := getenv("USER"); u != "" {
		return u
	}
	return fmt.Sprint(os.Getuid())
}

// notRecorded are flags whose values say nothing about the work (and the
// profiles' paths): never in a record.
var notRecorded = map[string]bool{"cpu-profile": true, "mem-profile": true, "trace": true, "help": true}

// effectiveOptions are the command's own flags with their effective
// values, defaults included, and the inherited flags that were set.
// Passphrases and key files are never flags (they are named by path); a
// connection string given with a password (which pg commands refuse, but
// the refusal is recorded) is recorded with the password redacted.
func effectiveOptions(cmd *cobra.Command) map[string]string {
	out := make(map[string]string)
	add := func(f *pflag.Flag) {
		if !notRecorded[f.Name] {
			out[f.Name] = pg.RedactDSN(f.Value.String())
		}
	}
	cmd.LocalNonPersistentFlags().VisitAll(add)
	// Only the command's own flag set knows which were set (Visit of
	// the derived sets sees none).
	set := func(f *pflag.Flag) {
		if f.Changed {
			add(f)
		}
	}
	cmd.InheritedFlags().VisitAll(set)
	cmd.PersistentFlags().VisitAll(set)
	return out
}

// appendBatched spools run's call and flushes the spool when it is due
// (audit.Spool). A call that cannot be spooled is recorded on its own; a
// flush that fails leaves the items for the next call, with a warning.
// The record (user, host) is made only when one is appended: archive-wal
// runs once per segment, and most calls only spool.
func (a *app) appendBatched(ctx context.Context, run *auditRun, t *auditTarget, outcome, msg string) error {
	// The call's arguments and the flags it was given (--name).
	arg := strings.Join(run.args, " ")
	run.cmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			arg += " --" + f.Name + "=" + pg.RedactDSN(f.Value.String())
		}
	})
	var items []audit.BatchItem
	if !run.spooled {
		items = []audit.BatchItem{{Time: run.started.UTC(), Arg: arg, Outcome: outcome, Message: msg}}
	}
	return a.spoolItems(ctx, run, t, items, func() *audit.Record { return a.auditRecord(run, t, outcome, msg) })
}

// spoolItems adds items to t's audit spool (the first directory that
// works) and flushes it when due. Items that cannot be spooled are
// recorded at once, in the record alone makes (nil: one batch record of
// them).
func (a *app) spoolItems(ctx context.Context, run *auditRun, t *auditTarget, items []audit.BatchItem, alone func() *audit.Record) error {
	l := audit.New(t.be, t.key, t.logID)
	batch := func(items []audit.BatchItem) *audit.Record {
		b := *a.auditRecord(run, t, batchOutcome(items), "")
		b.Args, b.Message, b.Wrote = nil, fmt.Sprintf("%d calls", len(items)), nil
		b.Time = items[0].Time
		b.Batch = items
		return &b
	}
	var sp *audit.Spool
	var err error
	for _, dir := range a.auditSpoolDirs() {
		sp = audit.NewSpool(dir, t.logID)
		if err = sp.Add(items...); err == nil {
			break
		}
	}
	if err != nil {
		// Correct, only slower: the calls get a record of their own.
		a.log.Info("audit: no spool; recording these calls on their own", "err", err)
		rec := batch(items)
		if alone != nil {
			rec = alone()
		}
		_, err := l.Append(ctx, rec)
		return err
	}
	_, err = sp.Flush(time.Now(), false, func(items []audit.BatchItem) error {
		_, err := l.Append(ctx, batch(items))
		return err
	})
	if err != nil {
		a.warn(fmt.Sprintf("audit: the spooled calls in %s stay there for the next call: %v", sp.Path(), err))
	}
	return nil
}

// spoolAudit spools items, the files a background WAL archiver served,
// as the calls that would have archived them spool theirs (appendBatched);
// the command's own run then adds no item.
func (a *app) spoolAudit(ctx context.Context, items []audit.BatchItem) error {
	run := a.audit
	if run == nil || len(run.targets) == 0 || len(items) == 0 {
		return nil
	}
	run.spooled = true
	return a.spoolItems(ctx, run, run.targets[0], items, nil)
}

func batchOutcome(items []audit.BatchItem) string {
	failed := 0
	for _, it := range items {
		if it.Outcome != audit.Success {
			failed++
		}
	}
	switch failed {
	case 0:
		return audit.Success
	case len(items):
		return audit.Failed
	}
	return audit.Partial
}

// auditSpoolDirs are where batched calls are spooled, the first that
// works: --audit-spool alone when given, else $XDG_STATE_HOME/nestguard
// or ~/.local/state/nestguard, then a directory of this user's own in the
// temporary directory (PostgreSQL may run its commands with a HOME its
// user cannot write).
func (a *app) auditSpoolDirs() []string {
	if a.auditSpool != "" {
		return []string{a.auditSpool}
	}
	var dirs []string
	if d := a.getenv("XDG_STATE_HOME"); d != "" {
		dirs = append(dirs, filepath.Join(d, "nestguard"))
	} else if home := a.getenv("HOME"); home != "" {
		dirs = append(dirs, filepath.Join(home, ".local", "state", "nestguard"))
	}
	if d, err := ownTempDir(); err == nil {
		dirs = append(dirs, d)
	}
	return dirs
}

// ownTempDir is $TMPDIR/nestguard-audit-<uid>, created mode 0700, and
// used only if it is a directory of this user's that no one else may
// write to (another user could have made it first).
func ownTempDir() (string, error) {
	d := filepath.Join(os.TempDir(), fmt.Sprintf("nestguard-audit-%d", os.Getuid()))
	if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	fi, err := os.Lstat(d)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("%s is not a directory of this user's alone", d)
	}
	return d, nil
}
