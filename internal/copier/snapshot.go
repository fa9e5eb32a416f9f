package copier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/needs"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// pair is a source snapshot and its copy: a seed whose trees tell the
// destination IDs of whatever a new snapshot shares with it.
type pair struct {
	src, dst *snapshot.Snapshot
}

// seed picks the copied snapshot most like sn: its parent if that was
// copied, else the latest copied snapshot before it of the same kind, host
// and paths. Nil when there is none. Without a seed every blob of sn is
// read from the source (the destination still stores only what it lacks).
func (c *Copier) seed(sn *snapshot.Snapshot, srcList []*snapshot.Snapshot, done map[string]*snapshot.Snapshot) *pair {
	if sn.Parent != nil {
		if d, ok := done[c.src.Config().ID+"/"+sn.Parent.String()]; ok {
			for _, p := range srcList {
				if p.ID == *sn.Parent {
					return &pair{p, d}
				}
			}
		}
	}
	f := snapshot.Filter{Kind: sn.Kind, Host: sn.Hostname, Paths: sn.Paths}
	for i := len(srcList) - 1; i >= 0; i-- {
		p := srcList[i]
		if p.ID == sn.ID || p.Time.After(sn.Time) || !f.Match(p) {
			continue
		}
		if d, ok := done[c.origin(p)]; ok {
			return &pair{p, d}
		}
	}
	return nil
}

// copySnapshot copies one snapshot: its data blobs, then its trees, then
// the snapshot record, which the commit step saves only once everything it
// references is durable and indexed in the destination. It returns the
// copy whenever it was saved, also with the error of a failed retention,
// and what the copy stored.
func (c *Copier) copySnapshot(ctx context.Context, step *commit.Step, sn *snapshot.Snapshot, seed *pair,
	done map[string]*snapshot.Snapshot) (_ *snapshot.Snapshot, _ commit.Counters, err error) {
	defer func() {
		if err != nil {
			// Let the packs already uploading finish: the summary then
			// counts every pack that arrived, and none is cut off.
			c.dst.WaitUploads()
		}
	}()
	pl := newPlan()
	pgControl, err := pgControlBlob(sn)
	if err != nil {
		return nil, commit.Counters{}, &sourceError{err}
	}
	if err := c.checkWAL(ctx, sn); err != nil {
		return nil, commit.Counters{}, err
	}
	if !pgControl.IsNull() {
		if _, ok := c.blob(pgControl); !ok {
			pl.need[pgControl] = struct{}{}
		}
	}
	var hint *treePair
	if seed != nil {
		hint = &treePair{src: seed.src.Tree, dst: seed.dst.Tree}
		c.log.Debug("copying against a copied snapshot", "snapshot", sn.ID.Short(), "seed", seed.src.ID.Short())
	}
	if err := c.scan(ctx, sn.Tree, hint, pl); err != nil {
		return nil, commit.Counters{}, err
	}
	if err := c.copyBlobs(ctx, pl.need); err != nil {
		return nil, commit.Counters{}, err
	}
	root, err := c.rewrite(ctx, sn.Tree, pl)
	if err != nil {
		return nil, commit.Counters{}, err
	}
	cp := *sn
	cp.ID = id.Null
	cp.Tree = root
	cp.Paths = slices.Clone(sn.Paths)
	cp.Tags = slices.Clone(sn.Tags)
	cp.Parent = nil
	if sn.Parent != nil {
		if d, ok := done[c.src.Config().ID+"/"+sn.Parent.String()]; ok {
			pid := d.ID
			cp.Parent = &pid
		}
	}
	cp.CopiedFrom = c.origin(sn)
	if !pgControl.IsNull() {
		nid, _ := c.blob(pgControl) // copied above, or copyBlobs failed
		if cp.Extra, err = pgmeta.WithPGControl(sn.Extra, nid); err != nil {
			return nil, commit.Counters{}, fromSource("snapshot %s: %w", sn.ID.Short(), err)
		}
	}
	// Another copy into the destination may be saving a copy of sn at
	// the same time (a continuous copy and a manual one): SaveOnce looks
	// for it just before and just after saving.
	stored, err := step.SaveOnce(ctx, &cp, c.duplicate)
	if de := (*commit.DuplicateError)(nil); errors.As(err, &de) {
		return de.Existing, commit.Counters{}, err
	}
	if cp.ID.IsNull() {
		return nil, commit.Counters{}, fmt.Errorf("destination: %w", err)
	}
	return &cp, stored, err
}

// duplicate is the commit.Duplicate of a copy: it lists the destination's
// snapshots again (reading only those it has not read before) and returns
// the other copy of cp's source snapshot with the smallest ID, or nil.
func (c *Copier) duplicate(ctx context.Context, cp *snapshot.Snapshot) (*snapshot.Snapshot, error) {
	ids, err := c.dst.ListObjects(ctx, backend.SnapshotFile)
	if err != nil {
		return nil, err
	}
	var best *snapshot.Snapshot
	for _, oid := range ids {
		if oid == cp.ID {
			continue
		}
		d, ok := c.dstSeen[oid]
		if !ok {
			if d, err = snapshot.Load(ctx, c.dst, oid); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				continue // unreadable: no copy this run can know of
			}
			c.dstSeen[oid] = d
		}
		if d.CopiedFrom == cp.CopiedFrom && (best == nil || bytes.Compare(d.ID[:], best.ID[:]) < 0) {
			best = d
		}
	}
	return best, nil
}

// sourceError is a failure to read what one snapshot needs from the
// source (its data lost or damaged, its WAL incomplete): that snapshot is
// not copied, and Run goes on with the others. Any other failure (the
// destination's, or the end of the context) stops Run.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// fromSource is fmt.Errorf for a sourceError.
func fromSource(format string, a ...any) error {
	return &sourceError{fmt.Errorf(format, a...)}
}

// pgControlBlob is the pg_control blob sn needs (internal/needs), or
// id.Null.
func pgControlBlob(sn *snapshot.Snapshot) (id.ID, error) {
	n, err := needs.Of(sn)
	if err != nil {
		return id.Null, err
	}
	for _, b := range n.Blobs {
		if b.What == needs.PGControl {
			return b.ID, nil
		}
	}
	return id.Null, nil
}

// checkWAL refuses to copy a base backup whose WAL span (internal/needs) is
// not all in the destination: the source's WAL was copied first, so a
// segment missing there is missing in the source, and the copy could not
// be restored.
func (c *Copier) checkWAL(ctx context.Context, sn *snapshot.Snapshot) error {
	n, err := needs.Of(sn)
	if err != nil {
		return &sourceError{err}
	}
	for _, name := range n.WAL {
		if _, err := c.dst.Backend().Stat(ctx, backend.Handle{Type: backend.WALFile, Name: name}); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fromSource("WAL segment wal/%s of base backup %s is missing in the source: the copy could not be made consistent; run 'nestguard verify' on the source", name, sn.ID.Short())
			}
			return fmt.Errorf("destination: %w", err)
		}
	}
	return nil
}
