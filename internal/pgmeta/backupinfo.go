// Package pgmeta holds what a PostgreSQL base backup records in its
// snapshot (BackupInfo), WAL positions (LSN) and the names of WAL files:
// what the packages that read snapshots (needs, and through it verify,
// copy and retention) know of PostgreSQL, without the server code of
// internal/pg, which builds on it.
package pgmeta

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// BackupInfo is what a base backup records in its snapshot's Extra field.
// A postgres snapshot exists only once every WAL segment from StartLSN to
// StopLSN is in the repository: the snapshot object is the completion mark.
type BackupInfo struct {
	SystemID       uint64        `json:"system_identifier,string"` // pg_control_system(): one cluster's backups
	ServerVersion  int           `json:"server_version_num"`       // e.g. 150018
	Timeline       uint32        `json:"timeline"`
	StartLSN       LSN           `json:"start_lsn"`
	StopLSN        LSN           `json:"stop_lsn"`
	StartWAL       string        `json:"start_wal"` // segment holding StartLSN
	StopWAL        string        `json:"stop_wal"`  // segment holding StopLSN
	StartTime      time.Time     `json:"start_time"`
	StopTime       time.Time     `json:"stop_time"`
	WALSegmentSize int64         `json:"wal_segment_size"`
	BlockSize      int           `json:"block_size"`      // bytes per relation file chunk (a multiple of 8 KiB)
	DataChecksums  bool          `json:"data_checksums"`  // pages were verified while reading
	BackupLabel    string        `json:"backup_label"`    // exactly as pg_backup_stop returned it
	TablespaceMap  string        `json:"tablespace_map"`  // exactly as pg_backup_stop returned it ("" if none)
	PGControl      id.ID         `json:"pg_control_blob"` // global/pg_control, copied last, stored as one data blob
	Tablespaces    []Tablespace  `json:"tablespaces,omitempty"`
	CorruptPages   []CorruptPage `json:"corrupt_pages,omitempty"`
	DataDir        string        `json:"data_directory"`
	DatabaseSize   int64         `json:"database_size"` // bytes read from the data directory and tablespaces
	// CopyStart is this machine's clock when the file copy began. The next
	// backup reads again every file modified since a second before it: a
	// write in the same timestamp tick as the one seen would not change
	// the file's mtime.
	CopyStart time.Time `json:"copy_start"`
}

// Tablespace is one entry of pg_tblspc: its OID and where it lived.
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Location string `json:"location"`
}

// CorruptPage is a relation page whose checksum did not verify while read.
type CorruptPage struct {
	Path  string `json:"path"`  // relative to the data directory, e.g. base/16384/16397.1
	Block int64  `json:"block"` // block number within that file
	Error string `json:"error"`
}

// Info decodes the BackupInfo of a postgres snapshot.
func Info(sn *snapshot.Snapshot) (*BackupInfo, error) {
	if sn.Kind != snapshot.KindPostgres {
		return nil, fmt.Errorf("snapshot %s is a %s snapshot, not a PostgreSQL base backup", sn.ID.Short(), sn.Kind)
	}
	var bi BackupInfo
	if err := json.Unmarshal(sn.Extra, &bi); err != nil {
		return nil, fmt.Errorf("snapshot %s: PostgreSQL backup details unreadable: %w", sn.ID.Short(), err)
	}
	return &bi, nil
}

// PGControlField is the field of a snapshot's PostgreSQL details that
// names the pg_control blob (BackupInfo.PGControl).
const PGControlField = "pg_control_blob"

// WithPGControl returns a snapshot's PostgreSQL details (its Extra) with
// the pg_control blob replaced by blob and every other field kept as it
// is, known to this version or not (a copy re-keys blob ids).
func WithPGControl(extra json.RawMessage, blob id.ID) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(extra, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("PostgreSQL backup details are not a JSON object")
	}
	v, err := json.Marshal(blob.String())
	if err != nil {
		return nil, err
	}
	// Decoding matches field names without regard to case: a key the
	// decoder reads as this field under another spelling goes too.
	for k := range m {
		if strings.EqualFold(k, PGControlField) {
			delete(m, k)
		}
	}
	m[PGControlField] = v
	return json.Marshal(m)
}
