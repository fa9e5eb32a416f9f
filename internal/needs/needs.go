// Package needs is the one owner of what restoring a snapshot reads: the
// root tree with every tree and data blob below it, and for a PostgreSQL
// base backup the pg_control blob (stored outside the tree) and the WAL
// segments from the backup's start to its stop, without which the copied
// files never become consistent. verify checks exactly this, copy copies
// it, and retention and legal holds protect the objects that hold it.
package needs

import (
	"fmt"
	"slices"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// Needs is what restoring one snapshot reads.
type Needs struct {
	Snapshot id.ID
	// Tree is the root tree: every tree and data blob below it is needed.
	Tree id.ID
	// Blobs are the data blobs needed outside the tree.
	Blobs []Blob
	// WAL names the WAL segments that must be in the repository (wal/<name>),
	// oldest first.
	WAL []string

	startWAL, stopWAL string
}

// Blob is a data blob a snapshot needs outside its tree, and what it is.
type Blob struct {
	ID   id.ID
	What string // PGControl
}

// PGControl is the What of a base backup's global/pg_control, which is
// copied last and stored outside the tree.
const PGControl = "pg_control"

// Of returns what restoring sn reads. A PostgreSQL snapshot whose details
// cannot be decoded is an error: what it needs is unknown.
func Of(sn *snapshot.Snapshot) (*Needs, error) {
	n := &Needs{Snapshot: sn.ID, Tree: sn.Tree}
	if sn.Kind != snapshot.KindPostgres {
		return n, nil
	}
	bi, err := pgmeta.Info(sn)
	if err != nil {
		return nil, err
	}
	if !bi.PGControl.IsNull() {
		n.Blobs = append(n.Blobs, Blob{ID: bi.PGControl, What: PGControl})
	}
	n.startWAL, n.stopWAL = bi.StartWAL, bi.StopWAL
	if bi.StartWAL == "" {
		return n, nil
	}
	segSize := bi.WALSegmentSize
	if segSize == 0 {
		segSize = pgmeta.DefaultSegmentSize
	}
	stop := bi.StopWAL
	if stop == "" {
		stop = bi.StartWAL
	}
	// The same span a base backup waits for before it saves its snapshot.
	if n.WAL, err = pgmeta.SegmentsBetween(bi.StartWAL, stop, segSize); err != nil {
		return nil, fmt.Errorf("snapshot %s: WAL range: %w", sn.ID.Short(), err)
	}
	return n, nil
}

// WALObjects returns, among the stored WAL object names given, those that
// belong to the snapshot's WAL span: its segments, and the backup history
// files and partial segments from its start to its stop segment, and the
// history file of its stop segment's timeline. (Only the segments are required; the rest
// is kept with them where it exists.)
func (n *Needs) WALObjects(names []string) []string {
	if n.startWAL == "" {
		return nil
	}
	start, stop := n.startWAL, n.stopWAL
	if stop == "" {
		stop = start
	}
	hist := stop[:min(8, len(stop))] + ".history"
	var out []string
	for _, name := range names {
		switch {
		case pgmeta.IsWALFileName(name) && !pgmeta.IsHistory(name) && name[:24] >= start && name[:24] <= stop:
			out = append(out, name)
		case name == hist:
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
