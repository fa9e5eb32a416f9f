// Package copier copies snapshots from one repository to another, for
// example to a bucket in a second region. Blob IDs are keyed per
// repository, so a copy re-encrypts and re-identifies every blob: data
// blobs are read from the source, saved into the destination (where they
// deduplicate against what it already has) and the trees are rewritten
// with the destination's IDs, bottom-up.
//
// A copy is idempotent (a snapshot whose copy exists is skipped: copies
// record their origin in Snapshot.CopiedFrom) and resumable (packs left by
// an interrupted copy are indexed and reused, as a backup does).
package copier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nestguard/nestguard/internal/audit"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// Options tune a copy.
type Options struct {
	// Workers bounds the source packs read at once (default
	// DefaultWorkers). Memory stays near Workers blobs plus the
	// destination's pack buffers.
	Workers int
	// WALWorkers bounds the WAL objects copied at once (default
	// DefaultWALWorkers).
	WALWorkers int
	Log        *slog.Logger
	// Commit configures the commit step that saves each copy in the
	// destination (its retention there, and the hook).
	Commit commit.Options
	// NewerThanLast copies only the source snapshots not older than the
	// newest copy the destination holds of a snapshot of the same
	// source, kind, host and paths (all of them where it holds none):
	// the snapshots the destination forgot stay forgotten (copy
	// --newer-than-last). Result.Older names those it left out.
	NewerThanLast bool
}

// Defaults of Options.
const (
	DefaultWorkers = 4
	// DefaultWALWorkers bounds WAL objects in flight: a segment is 16 MiB
	// by default, read whole and stored whole.
	DefaultWALWorkers = 4
)

// Progress counts what a Copier did so far; safe to read while it runs.
// What the destination stored is in its repository's Stats.
type Progress struct {
	Snapshots atomic.Int64 // snapshots copied
	BlobsRead atomic.Int64 // data blobs read from the source
	BytesRead atomic.Int64 // their plaintext bytes
	WAL       atomic.Int64 // WAL objects copied
	WALBytes  atomic.Int64 // their plaintext bytes
}

// Copier copies snapshots from src to dst. It remembers which source blobs
// and trees it has copied (and their IDs in dst) for as long as it lives,
// so snapshots sharing data are read once; each Run forgets those that
// prune's deletion-candidate records make unsafe to reuse. Both indexes
// must be loaded.
type Copier struct {
	src, dst *repository.Repository
	o        Options
	log      *slog.Logger
	P        Progress

	mu    sync.Mutex
	blobs map[id.ID]id.ID // source data blob -> destination blob
	trees map[id.ID]id.ID // source tree -> rewritten destination tree
	// dstSeen are the destination's snapshots read so far (by Run and
	// duplicate), so that each check for a concurrent copy reads only
	// the snapshots saved since.
	dstSeen map[id.ID]*snapshot.Snapshot
}

// New returns a Copier from src to dst.
func New(src, dst *repository.Repository, o Options) (*Copier, error) {
	if src.Config().ID == dst.Config().ID {
		return nil, fmt.Errorf("source %s and destination %s are the same repository (id %s)", src.Location(), dst.Location(), src.Config().ID[:8])
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.WALWorkers <= 0 {
		o.WALWorkers = DefaultWALWorkers
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Copier{src: src, dst: dst, o: o, log: log, blobs: make(map[id.ID]id.ID), trees: make(map[id.ID]id.ID),
		dstSeen: make(map[id.ID]*snapshot.Snapshot)}, nil
}

// Copied describes a snapshot and its copy.
type Copied struct {
	Source      string    `json:"source"`
	Destination string    `json:"destination"`
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	Paths       []string  `json:"paths"`
	BlobsNew    int64     `json:"blobs_new"`    // data and tree blobs the destination lacked
	BytesStored int64     `json:"bytes_stored"` // their stored size
}

// Failed is a source snapshot that could not be copied, and why.
type Failed struct {
	Source string    `json:"source"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Paths  []string  `json:"paths"`
	Error  string    `json:"error"`
}

// Result is what one Run did.
type Result struct {
	Copied  []Copied `json:"copied"`
	Skipped []Copied `json:"skipped"` // copied before
	// Failed are the source snapshots whose data could not be read (a
	// pack lost or damaged, WAL missing): not copied; the others were. A
	// source that does not answer (backend.ErrUnavailable) fails Run
	// instead: nothing is known to be lost.
	Failed []Failed `json:"failed"`
	// Older are the source snapshots not copied because they are older
	// than the newest copy of their kind, host and paths
	// (Options.NewerThanLast).
	Older []string `json:"older_than_last_copy"`
	WAL   int64    `json:"wal_copied"`
	// AuditEntries are the audit log entries copied (internal/audit).
	AuditEntries int           `json:"audit_entries_copied"`
	BlobsRead    int64         `json:"blobs_read"`
	BytesRead    int64         `json:"bytes_read"`
	BlobsNew     int64         `json:"blobs_new"`    // in packs stored, even if the run failed
	BytesStored  int64         `json:"bytes_stored"` // their stored size
	Elapsed      time.Duration `json:"elapsed_ns"`
	// Unreadable names source snapshots that could not be read (with --all).
	Unreadable []string `json:"unreadable,omitempty"`
	// UnreadableExpiry names source WAL expiry records that could not be
	// read: the boundaries they set were not copied.
	UnreadableExpiry []string `json:"unreadable_expiry_records,omitempty"`
}

// PartialError is the error of a Run that went through every snapshot
// selected but could not copy them all (Result.Failed, Unreadable), or
// could not copy the source's WAL expiry records or audit log. What it
// could copy, it copied, and the destination is as fit for the next Run
// as before: a continuous copy goes on with it.
type PartialError struct{ Err error }

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// Hook is called after each snapshot copy is committed (saved, and its
// retention applied; see Options.Commit).
type Hook func(ctx context.Context, copied *snapshot.Snapshot) error

// Run copies the snapshots refs names (IDs, prefixes or "latest"), or all
// snapshots when all is set, oldest first. Snapshots already copied are
// skipped. WAL objects the destination lacks are copied when a PostgreSQL
// snapshot is among those selected, or with all. Each copy is saved
// through the commit step (internal/commit); when its retention or the
// commit hook fails, the copy is saved and counted, and Run stops with
// that error. after, if not nil, runs for every new copy.
//
// A snapshot whose data cannot be read from the source is not copied
// (nothing of it is committed: its blobs stored so far are referenced by
// no snapshot) and the others are: Run names it in Result.Failed and
// returns a *PartialError once it went through them all. Damage in the
// source never keeps its healthy snapshots from the destination.
func (c *Copier) Run(ctx context.Context, refs []string, all bool, after Hook) (*Result, error) {
	start := time.Now()
	before := c.counters()
	step, err := commit.Begin(ctx, c.dst, c.o.Commit)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	c.dropAvoided()
	srcList, srcErrs, err := snapshot.List(ctx, c.src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	res := &Result{Copied: []Copied{}, Skipped: []Copied{}, Failed: []Failed{}, Older: []string{}} // [] rather than null in JSON
	for _, e := range srcErrs {
		res.Unreadable = append(res.Unreadable, e.Error())
	}
	selected, err := selectSnapshots(srcList, srcErrs, refs, all)
	if err != nil {
		return nil, err
	}
	dstList, _, err := snapshot.List(ctx, c.dst)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	// done holds, by the origin a copy of it would record, every
	// snapshot the destination has: a copy by its CopiedFrom, and each
	// by its own name, so that a snapshot the source holds as a copy of
	// one of the destination's (copies run both ways), or of a third
	// repository's snapshot the destination holds a copy of too, is not
	// copied back as a new snapshot (as restic's copy skips by
	// "original").
	done := make(map[string]*snapshot.Snapshot)
	slices.SortFunc(dstList, func(a, b *snapshot.Snapshot) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	for _, d := range dstList {
		c.dstSeen[d.ID] = d
		done[c.dst.Config().ID+"/"+d.ID.String()] = d
		if d.CopiedFrom == "" {
			continue
		}
		if o, ok := done[d.CopiedFrom]; ok {
			// Two copies of one snapshot (two copies ran at once, in
			// the race commit.SaveOnce leaves, or before it existed):
			// forget --keep-last would count both.
			c.log.Warn(fmt.Sprintf("the destination holds two copies of one source snapshot, %s and %s: remove the second with 'nestguard forget %s'",
				o.ID.Short(), d.ID.Short(), d.ID.Short()), "copied_from", d.CopiedFrom)
			continue
		}
		done[d.CopiedFrom] = d
	}
	if all || slices.ContainsFunc(selected, func(sn *snapshot.Snapshot) bool { return sn.Kind == snapshot.KindPostgres }) {
		// Before any PostgreSQL snapshot: a base backup exists in a
		// repository only once its WAL does; and the WAL's gaps left
		// by the source's prunes only once the boundaries that account
		// for them are recorded.
		srcWAL, err := walNames(ctx, c.src)
		if err != nil {
			return nil, fmt.Errorf("source: listing WAL: %w", err)
		}
		dstWAL, err := walNames(ctx, c.dst)
		if err != nil {
			return nil, fmt.Errorf("destination: listing WAL: %w", err)
		}
		if res.UnreadableExpiry, err = c.copyExpiry(ctx, srcWAL, dstWAL); err != nil {
			return nil, err
		}
		if err := c.copyWAL(ctx, srcWAL, dstWAL); err != nil {
			return nil, err
		}
	}
	// The audit trail goes with the data: every log entry the
	// destination lacks, verbatim. A source log that diverged from the
	// destination's copy is reported once the snapshots are copied: the
	// second region is not held back by it.
	var diverged error
	if res.AuditEntries, err = audit.CopyEntries(ctx, c.src.Backend(), c.dst.Backend(), c.src.Config().ID); err != nil {
		if !errors.Is(err, audit.ErrLogDiverged) {
			return nil, fmt.Errorf("copying the audit log: %w", err)
		}
		diverged = fmt.Errorf("copying the audit log: %w", err)
	}
	var last map[string]time.Time
	if c.o.NewerThanLast {
		last = c.lastCopies(dstList)
	}
	for _, sn := range selected {
		d, ok := done[c.origin(sn)]
		if !ok && sn.CopiedFrom != "" {
			d, ok = done[sn.CopiedFrom]
		}
		if ok {
			res.Skipped = append(res.Skipped, describe(sn, d))
			continue
		}
		if t, ok := last[group(sn)]; ok && sn.Time.Before(t) {
			res.Older = append(res.Older, sn.ID.String())
			continue
		}
		d, stored, err := c.copySnapshot(ctx, step, sn, c.seed(sn, srcList, done), done)
		if de := (*commit.DuplicateError)(nil); errors.As(err, &de) {
			// Another copy into the destination saved it meanwhile.
			c.log.Info("snapshot copied meanwhile by another copy", "source", sn.ID.Short(), "destination", de.Existing.ID.Short())
			done[de.Existing.CopiedFrom] = de.Existing
			res.Skipped = append(res.Skipped, describe(sn, de.Existing))
			continue
		}
		// A source that did not answer lost nothing: that stops the
		// copy as a failure, not a snapshot whose data is lost.
		if se := (*sourceError)(nil); d == nil && errors.As(err, &se) && ctx.Err() == nil && !errors.Is(err, backend.ErrUnavailable) {
			res.Failed = append(res.Failed, Failed{Source: sn.ID.String(), Time: sn.Time, Kind: sn.Kind, Paths: sn.Paths, Error: err.Error()})
			c.log.Error("snapshot not copied: its data cannot be read from the source", "source", sn.ID.Short(), "err", err)
			continue
		}
		if d == nil {
			if errors.Is(err, backend.ErrUnavailable) && ctx.Err() == nil {
				err = fmt.Errorf("%w; the storage did not answer, so the copy stopped (nothing is known to be damaged; run it again when the store answers: what was copied stays)", err)
			}
			return res.finish(c, before, start), errors.Join(fmt.Errorf("copying snapshot %s: %w", sn.ID.Short(), err), diverged)
		}
		done[d.CopiedFrom] = d
		cp := describe(sn, d)
		cp.BlobsNew, cp.BytesStored = stored.Blobs, stored.Stored
		res.Copied = append(res.Copied, cp)
		c.P.Snapshots.Add(1)
		c.log.Info("snapshot copied", "source", sn.ID.Short(), "destination", d.ID.Short(), "new_blobs", cp.BlobsNew)
		if err != nil { // saved, but its retention or the commit hook failed
			return res.finish(c, before, start), errors.Join(err, diverged)
		}
		if after != nil {
			if err := after(ctx, d); err != nil {
				return res.finish(c, before, start), errors.Join(err, diverged)
			}
		}
	}
	if len(res.Failed) > 0 {
		// What the failed snapshots stored is made durable now, as an
		// interrupted copy's packs are (the next Run reuses it), so that
		// no pack stays open between the rounds of a continuous copy.
		if err := c.dst.Flush(ctx); err != nil {
			return res.finish(c, before, start), errors.Join(fmt.Errorf("destination: %w", err), diverged)
		}
	}
	res.finish(c, before, start)
	var unreadable []error
	if n := len(res.Failed); n > 0 {
		f := res.Failed[0]
		unreadable = append(unreadable, fmt.Errorf("%d of %d source snapshots could not be copied, the first %s: %s; the others were copied; run 'nestguard verify' on the source, and 'nestguard forget' on it the snapshots that cannot be repaired",
			n, len(selected), f.Source[:8], f.Error))
	}
	if len(res.Unreadable) > 0 {
		unreadable = append(unreadable, fmt.Errorf("%d source snapshots could not be read and were not copied: %s", len(res.Unreadable), res.Unreadable[0]))
	}
	if len(res.UnreadableExpiry) > 0 {
		unreadable = append(unreadable, fmt.Errorf("%d WAL expiry records of the source could not be read and were not copied (%s): the WAL the source's prunes removed on purpose before the boundaries they set may be reported lost by the destination's verify; run 'nestguard prune' on the source (it records its boundaries again) and copy again", len(res.UnreadableExpiry), res.UnreadableExpiry[0]))
	}
	if err := errors.Join(append(unreadable, diverged)...); err != nil {
		return res, &PartialError{err}
	}
	return res, nil
}

// lastCopies returns, by group, the time of the newest snapshot of dst
// copied from the source.
func (c *Copier) lastCopies(dst []*snapshot.Snapshot) map[string]time.Time {
	last := make(map[string]time.Time)
	prefix := c.src.Config().ID + "/"
	for _, d := range dst {
		if !strings.HasPrefix(d.CopiedFrom, prefix) {
			continue
		}
		if k := group(d); d.Time.After(last[k]) {
			last[k] = d.Time
		}
	}
	return last
}

// group is what NewerThanLast compares snapshots within: their kind,
// host and paths.
func group(sn *snapshot.Snapshot) string {
	paths := slices.Clone(sn.Paths)
	slices.Sort(paths)
	return strings.Join(append([]string{sn.Kind, sn.Hostname}, paths...), "\x00")
}

// dropAvoided forgets what an earlier Run learned that this one may not
// reuse: the commit step's Begin just listed prune's deletion-candidate
// records, and a destination blob only their packs hold must be copied
// again (a prune may delete the packs without seeing this Run's
// snapshots, docs/format.md "Prune"). While any pack is a candidate, the
// rewritten trees are forgotten too (a blob below one may be in such a
// pack, as for a seed's directory); the blobs stay only where reusable.
func (c *Copier) dropAvoided() {
	if !c.dst.HasCandidatePacks() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.trees)
	for s, d := range c.blobs {
		if !c.dst.Reusable(d) {
			delete(c.blobs, s)
		}
	}
}

type counters struct{ BlobsRead, BytesRead, BlobsNew, BytesStored, WAL int64 }

func (c *Copier) counters() counters {
	// What arrived, not what was queued: after a failure, blobs added to
	// packs that were never stored must not count as stored.
	return counters{c.P.BlobsRead.Load(), c.P.BytesRead.Load(), c.dst.Stats.DurableBlobs.Load(), c.dst.Stats.DurableBytes.Load(), c.P.WAL.Load()}
}

func (r *Result) finish(c *Copier, before counters, start time.Time) *Result {
	now := c.counters()
	r.BlobsRead = now.BlobsRead - before.BlobsRead
	r.BytesRead = now.BytesRead - before.BytesRead
	r.BlobsNew = now.BlobsNew - before.BlobsNew
	r.BytesStored = now.BytesStored - before.BytesStored
	r.WAL = now.WAL - before.WAL
	r.Elapsed = time.Since(start)
	return r
}

func describe(sn, d *snapshot.Snapshot) Copied {
	return Copied{Source: sn.ID.String(), Destination: d.ID.String(), Time: sn.Time, Kind: sn.Kind, Paths: sn.Paths}
}

// origin is the CopiedFrom value of sn's copy.
func (c *Copier) origin(sn *snapshot.Snapshot) string {
	return c.src.Config().ID + "/" + sn.ID.String()
}

func selectSnapshots(list []*snapshot.Snapshot, unreadable []error, refs []string, all bool) ([]*snapshot.Snapshot, error) {
	switch {
	case all && len(refs) > 0:
		return nil, errors.New("give snapshots or --all, not both")
	case all:
		return list, nil
	case len(refs) == 0:
		return nil, errors.New("no snapshots to copy: name them or give --all")
	}
	seen := make(map[id.ID]bool)
	var out []*snapshot.Snapshot
	for _, ref := range refs {
		sn, err := snapshot.Find(list, unreadable, ref, snapshot.Filter{})
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if !seen[sn.ID] {
			seen[sn.ID] = true
			out = append(out, sn)
		}
	}
	slices.SortFunc(out, func(a, b *snapshot.Snapshot) int { return a.Time.Compare(b.Time) })
	return out, nil
}
