package prune

import (
	"time"

	"github.com/nestguard/nestguard/internal/id"
)

// Report is what a prune did (or, in a dry run, would do). Its JSON form
// is the 'prune --json' document (docs/json.md).
type Report struct {
	DryRun    bool `json:"dry_run"`
	Snapshots int  `json:"snapshots"` // snapshots whose data was kept
	// Packs and Bytes are the repository's packs and their bytes before
	// the prune.
	Packs int   `json:"packs"`
	Bytes int64 `json:"bytes"`
	// Used and Unused are the bytes of live and of unused blobs in the
	// packs that stay unmarked (unused: left below --max-unused).
	Used   int64 `json:"used_bytes"`
	Unused int64 `json:"unused_bytes"`

	// Repacked are the partly used packs whose live blobs were copied
	// into new packs (and which were then marked).
	Repacked       Count `json:"repacked"`
	RepackedBlobs  int   `json:"repacked_blobs"`
	RepackedStored int64 `json:"repacked_bytes_written"`
	// Marked are the packs marked as deletion candidates by this run, in
	// one record (none when nothing was marked).
	Marked *Mark `json:"marked,omitempty"`
	// Pending are the packs marked by earlier runs whose grace period has
	// not ended.
	Pending Count `json:"pending"`
	// Deleted are the packs deleted, in a dry run those that would be.
	Deleted Count `json:"deleted"`
	// Resurrected are packs of due records that a snapshot needs again:
	// kept, and no longer candidates.
	Resurrected Count `json:"resurrected"`
	// IndexReplaced counts the index objects replaced by ones without the
	// deleted packs (or removed, when they listed nothing else).
	IndexReplaced int `json:"index_replaced"`
	// RecordsRemoved counts the candidate records done with and removed.
	RecordsRemoved int `json:"records_removed"`
	// Retained are the objects prune would delete or mark but the store
	// keeps (Object Lock retention, legal hold): not a failure.
	Retained []Retained `json:"retained"`
	// WALRemoved are the wal/ objects removed (Options.WAL).
	WALRemoved []string `json:"wal_removed"`
	// Warnings are problems that did not stop the prune (damaged
	// candidate records, unreadable packs left in place).
	Warnings []string `json:"warnings"`
	// Errors are what the prune could not do; the command fails when
	// there are any.
	Errors []string `json:"errors"`

	Elapsed time.Duration `json:"-"`
}

// Count is a number of packs and their bytes.
type Count struct {
	Packs int   `json:"packs"`
	Bytes int64 `json:"bytes"`
}

func (c *Count) add(size int64) {
	c.Packs++
	c.Bytes += size
}

// Mark is the candidate record a prune wrote.
type Mark struct {
	Record    id.ID     `json:"record"` // zero in a dry run
	Packs     int       `json:"packs"`
	Bytes     int64     `json:"bytes"`
	NotBefore time.Time `json:"not_before"`
	// Orphans counts the marked packs that no index lists (left by
	// interrupted backups, older than the grace period).
	Orphans int `json:"orphans"`
	// Missing counts the marked packs that the index lists but that are
	// not stored: a prune after the grace period takes them out of the
	// index. Lost counts those of them that held blobs snapshots need.
	Missing int `json:"missing"`
	Lost    int `json:"lost"`
}

// Retained is an object the store does not allow to be deleted yet.
type Retained struct {
	Object string    `json:"object"` // e.g. data/<id>, index/<id>, wal/<name>
	Until  time.Time `json:"until"`  // end of its retention (zero: none)
	Held   bool      `json:"held"`   // under a legal hold
	// Why says what prune wanted: "unused" (not marked), "candidate" (not
	// deleted), "index" (its index object is retained, so it stays
	// indexed and is not deleted), "wal".
	Why string `json:"why"`
}
