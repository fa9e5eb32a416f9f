package compliance

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/audit"
	"github.com/nestguard/nestguard/internal/class"
	"github.com/nestguard/nestguard/internal/hold"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// Evidence is what a report is evaluated against, read from the
// repository by the caller.
type Evidence struct {
	// From and To bound the period reported on (From zero: since the
	// beginning); To is also the time ages are measured at.
	From, To time.Time
	// Repository is where the repository is (without credentials).
	Repository string
	Config     repository.Config
	// LockEnforced says whether the storage enforces Object Lock
	// (backend.Locker.LockEnabled); nil when it cannot (a local
	// directory) or was not asked.
	LockEnforced *bool
	// Remote is true for object storage (S3), reached over TLS.
	Remote bool
	// Snapshots are the readable snapshots, oldest first; Unreadable the
	// ids of those that could not be read.
	Snapshots  []*snapshot.Snapshot
	Unreadable []id.ID
	Classes    class.Set
	Holds      []*hold.Record
	// HoldsCheck is what the storage says of the active holds recorded
	// as enforced (hold.CheckEnforced): those whose objects do not all
	// carry a legal hold; HoldsCheckErr why it could not be asked (the
	// held snapshot gone, the storage failing). Both empty where the
	// storage enforces no legal holds.
	HoldsCheck    []hold.Partial
	HoldsCheckErr error
	Keys          []repository.KeyInfo
	// MaxKeyAge is the longest a key may go unrotated (zero: a year).
	MaxKeyAge time.Duration
	// Log is the audit log read up to its checkpoint.
	Log LogEvidence
	// RedactRepo strips credentials from a repository location as the
	// audit records store it (nil: unchanged).
	RedactRepo func(string) string
}

// LogEvidence is the audit log as read and verified.
type LogEvidence struct {
	ID string
	// Checkpoint is the signed checkpoint the records were read up to;
	// nil for an empty log.
	Checkpoint *audit.Checkpoint
	// Records are the records up to the checkpoint that the report
	// reads (at least those Needs keeps), in log order.
	Records []Record
	// Damaged are records that did not open.
	Damaged []string
	// Problems are what 'audit verify' found (none: the log verifies).
	Problems []string
}

// Record is an audit record with its position in the log.
type Record struct {
	Position uint64
	*audit.Record
}

func (r Record) who() string { return r.User + "@" + r.Host }

// Needs reports whether the controls read record r (From and To set):
// those of the period, every record that wrote or removed an object
// (the history of snapshots, holds and keys), init, and the record that
// ends a command begun in the period (so that its Started record is not
// taken for an unfinished command). A reader of a long log keeps only
// these.
func (ev *Evidence) Needs(r *audit.Record) bool {
	return ev.inWindow(r.Time) || len(r.Wrote) > 0 || r.Command == cmdInit || r.IntentRecord != nil
}

// inWindow reports whether t is in [From, To).
func (ev *Evidence) inWindow(t time.Time) bool {
	return (ev.From.IsZero() || !t.Before(ev.From)) && t.Before(ev.To)
}

func (ev *Evidence) redact(s string) string {
	if ev.RedactRepo == nil {
		return s
	}
	return ev.RedactRepo(s)
}

// window returns the records in the period, in log order.
func (ev *Evidence) window() []Record {
	var out []Record
	for _, r := range ev.Log.Records {
		if ev.inWindow(r.Time) {
			out = append(out, r)
		}
	}
	return out
}

// Commands whose records the controls read.
const (
	cmdInit       = "init"
	cmdBackup     = "backup"
	cmdPGBackup   = "pg backup"
	cmdCopy       = "copy"
	cmdForget     = "forget"
	cmdVerify     = "verify"
	cmdRestore    = "restore"
	cmdPGRestore  = "pg restore"
	cmdHoldAdd    = "hold add"
	cmdHoldRemove = "hold release"
	cmdKeyAdd     = "key add"
)

// Object name prefixes of a record's Wrote.
const (
	wroteSnapshot   = "snapshots/"
	removedSnapshot = "-snapshots/"
	wroteHold       = "holds/"
	wroteKey        = "keys/"
)

// objects returns the names of the objects of prefix r wrote ("snapshots/"
// gives snapshot ids).
func (r Record) objects(prefix string) []string {
	var out []string
	for _, w := range r.Wrote {
		if name, ok := strings.CutPrefix(w, prefix); ok {
			out = append(out, name)
		}
	}
	return out
}

// written is what the log says of one snapshot: the record that wrote it
// and the one that removed it.
type written struct {
	id      string
	by      *Record
	removed *Record
}

// snapshotHistory maps every snapshot id a record wrote or removed to what
// the log says of it.
func (ev *Evidence) snapshotHistory() map[string]*written {
	h := make(map[string]*written)
	get := func(sid string) *written {
		w := h[sid]
		if w == nil {
			w = &written{id: sid}
			h[sid] = w
		}
		return w
	}
	for i := range ev.Log.Records {
		r := &ev.Log.Records[i]
		// A failed writer may still have saved its snapshot (its
		// retention failing after the commit): it counts too.
		for _, sid := range r.objects(wroteSnapshot) {
			if w := get(sid); w.by == nil {
				w.by = r
			}
		}
		for _, sid := range r.objects(removedSnapshot) {
			if w := get(sid); w.removed == nil {
				w.removed = r
			}
		}
	}
	return h
}

// writerTime is when the snapshot a backup record wrote was taken: its
// --time if given, else when the command started.
func writerTime(r *Record) time.Time {
	if s := r.Options["time"]; s != "" {
		for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05"} {
			if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
				return t
			}
		}
	}
	return r.Time
}

// assetKey identifies what a snapshot protects: a host's paths, or a
// PostgreSQL cluster (by system identifier).
type assetKey struct {
	name  string
	class string
}

func assetOf(sn *snapshot.Snapshot) assetKey {
	if sn.Kind == snapshot.KindPostgres {
		if info, err := pgmeta.Info(sn); err == nil {
			return assetKey{fmt.Sprintf("postgres cluster %d (host %s)", info.SystemID, sn.Hostname), sn.Class}
		}
		return assetKey{"postgres on " + sn.Hostname, sn.Class}
	}
	paths := slices.Clone(sn.Paths)
	slices.Sort(paths)
	return assetKey{sn.Hostname + ":" + strings.Join(paths, ","), sn.Class}
}

// writerKey identifies the backups one command line makes: those of the
// same command, host, arguments, source and class back up the same asset.
func writerKey(r *Record) string {
	return strings.Join([]string{r.Command, r.Host, strings.Join(r.Args, "\x01"), r.Options["pgdata"], r.Options["dsn"], r.Options["class"]}, "\x00")
}

func fmtDur(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Millisecond).String()
	}
	d = d.Round(time.Second)
	var b strings.Builder
	if days := d / (24 * time.Hour); days > 0 {
		fmt.Fprintf(&b, "%dd", days)
		d -= days * 24 * time.Hour
	}
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	return b.String()
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

func short(sid string) string {
	if len(sid) > 8 {
		return sid[:8]
	}
	return sid
}
