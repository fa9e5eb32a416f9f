package main

// The documents commands print with --json: a stable contract that
// docs/json.md describes field by field. Adding a field keeps jsonVersion;
// renaming, removing or changing the type or meaning of one raises it.

import (
	"time"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/checker"
	"github.com/nestguard/nestguard/internal/copier"
	"github.com/nestguard/nestguard/internal/forget"
	"github.com/nestguard/nestguard/internal/hold"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/prune"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/restorer"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/stats"
	"github.com/nestguard/nestguard/internal/tree"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// jsonVersion is the version of the JSON documents, in every document
// that is an object as "json_version".
const jsonVersion = 1

// versioned is embedded first in every JSON object a command prints.
type versioned struct {
	JSONVersion int `json:"json_version"`
}

// current returns the header of a document of this version.
func current() versioned { return versioned{JSONVersion: jsonVersion} }

// initJSON is what 'init --json' prints.
type initJSON struct {
	versioned
	Repository string            `json:"repository"`
	ID         string            `json:"id"`
	Config     repository.Config `json:"config"`
}

// backupJSON is what 'backup --json' prints.
type backupJSON struct {
	versioned
	Snapshot string               `json:"snapshot"`
	ShortID  string               `json:"short_id"`
	Summary  *snapshot.Summary    `json:"summary"`
	Errors   []archiver.FileError `json:"errors"`
	// ChangedWhileRead lists the files written while they were read
	// (archiver.Archiver.Changed).
	ChangedWhileRead []archiver.FileError `json:"changed_while_read,omitempty"`
	DurationSeconds  float64              `json:"duration_seconds"`
}

// restoreJSON is what 'restore --json' prints.
type restoreJSON struct {
	versioned
	Snapshot    string               `json:"snapshot"`
	Target      string               `json:"target"`
	TargetBytes []byte               `json:"target_bytes,omitempty"`
	Files       int64                `json:"files"`
	FilesTotal  int64                `json:"files_total"`
	Dirs        int64                `json:"dirs"`
	Bytes       int64                `json:"bytes"`
	BytesTotal  int64                `json:"bytes_total"`
	Sockets     int64                `json:"sockets_not_recreated,omitempty"`
	Errors      []restorer.FileError `json:"errors"`
}

// verifyJSON is what 'verify --json' prints.
type verifyJSON struct {
	versioned
	OK     bool            `json:"ok"`
	Report *checker.Report `json:"report"`
}

// pruneJSON is what 'prune --json' prints.
type pruneJSON struct {
	versioned
	*prune.Report
	DurationSeconds float64 `json:"duration_seconds"`
	// WALExpiry is what the PostgreSQL WAL expiry kept; nil when it did
	// not run (the prune stopped before it).
	WALExpiry *walExpiryJSON `json:"wal_expiry,omitempty"`
}

// walExpiryJSON is the PostgreSQL WAL expiry of 'prune --json'.
type walExpiryJSON struct {
	KeepPITR policy.Duration     `json:"keep_pitr,omitzero"`
	Cutoff   time.Time           `json:"cutoff,omitzero"`
	Systems  []*walexpiry.System `json:"systems"`
	Note     string              `json:"note,omitempty"`
}

func walPlanJSON(p *walexpiry.Plan) *walExpiryJSON {
	if p == nil {
		return nil
	}
	return &walExpiryJSON{KeepPITR: p.KeepPITR, Cutoff: p.Cutoff, Systems: p.Systems, Note: p.Note}
}

// repairIndexJSON is what 'repair index --json' prints.
type repairIndexJSON struct {
	versioned
	PacksIndexed int             `json:"packs_indexed"`
	Removed      []id.ID         `json:"removed"`
	Kept         []keptIndexJSON `json:"kept"`
	BadPacks     []id.ID         `json:"bad_packs"`
	Candidates   []id.ID         `json:"candidate_packs"`
}

// keptIndexJSON is an unreadable index object repair left in place.
type keptIndexJSON struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

// retentionJSON is what 'retention apply --json' prints.
type retentionJSON struct {
	versioned
	Snapshots int  `json:"snapshots"`
	Objects   int  `json:"objects"`
	Extended  int  `json:"extended"`
	Complete  bool `json:"complete"`
}

// holdJSON is what 'hold add --json' and 'hold release --json' print.
type holdJSON struct {
	versioned
	Snapshot string `json:"snapshot"`
	Case     string `json:"case"`
	Action   string `json:"action"`
	Objects  int    `json:"objects"`
	Changed  int    `json:"changed"`
	Kept     int    `json:"kept"`
	Enforced bool   `json:"enforced"`
	Recorded bool   `json:"recorded"`
	Record   string `json:"record,omitempty"` // the record's id, when one was written
}

// holdListJSON is what 'hold list --json' prints.
type holdListJSON struct {
	versioned
	Active  []holdView `json:"active"`
	History []holdView `json:"history"`
	// Unreadable are the records left out of both lists, [] when none.
	Unreadable []unreadableJSON `json:"unreadable"`
	// Partial are the active holds whose objects do not all carry a
	// legal hold, [] when none.
	Partial []partialHoldJSON `json:"partial"`
}

// partialHoldJSON is a hold.Partial as 'hold list --json' prints it.
type partialHoldJSON struct {
	Snapshot string `json:"snapshot"`
	Case     string `json:"case"`
	hold.Partial
}

// unreadableJSON is an object that could not be read, and why.
type unreadableJSON struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// keyAddJSON is what 'key add --json' prints.
type keyAddJSON struct {
	versioned
	ID      string `json:"id"`
	KeyFile string `json:"key_file,omitempty"` // with --generate-key-file
}

// keyRemoveJSON is what 'key remove --json' prints.
type keyRemoveJSON struct {
	versioned
	ID string `json:"id"` // the key slot removed
}

// auditKeyJSON is what 'audit key --json' prints.
type auditKeyJSON struct {
	versioned
	Key string `json:"key"` // the verifier key, as 'audit key' prints it
}

// auditCheckpointJSON is what 'audit checkpoint --json' prints.
type auditCheckpointJSON struct {
	versioned
	Log        string `json:"log"`        // the log's id
	Size       uint64 `json:"size"`       // entries the checkpoint covers
	Root       string `json:"root"`       // its tree's root, hex
	Checkpoint string `json:"checkpoint"` // the signed note, as 'audit checkpoint' prints it
}

// snapshotJSON is one element of what 'snapshots --json' prints (an
// array, so without json_version).
type snapshotJSON struct {
	ID         string            `json:"id"`
	ShortID    string            `json:"short_id"`
	Time       time.Time         `json:"time"`
	Kind       string            `json:"kind"`
	Hostname   string            `json:"hostname"`
	Username   string            `json:"username"`
	Paths      []string          `json:"paths"`
	PathsBytes [][]byte          `json:"paths_bytes,omitempty"` // the exact bytes, when a path is not UTF-8
	Tags       []string          `json:"tags"`
	Tree       id.ID             `json:"tree"`
	Summary    *snapshot.Summary `json:"summary"`
	Class      string            `json:"class,omitempty"`     // its data class (backup --class)
	KeepUntil  time.Time         `json:"keep_until,omitzero"` // the end of its class's floor when taken
}

// lsEntryJSON is one element of what 'ls --json' prints (an array, so
// without json_version).
type lsEntryJSON struct {
	Path      string `json:"path"`
	PathBytes []byte `json:"path_bytes,omitempty"` // the exact bytes, when not UTF-8
	Type      string `json:"type"`
	Size      uint64 `json:"size"`
	Mode      string `json:"mode"`
	MTime     string `json:"mtime"`
}

// diffJSON is what 'diff --json' prints.
type diffJSON struct {
	versioned
	From    string        `json:"from"`
	To      string        `json:"to"`
	Changes []tree.Change `json:"changes"`
}

// statsJSON is what 'stats --json' prints.
type statsJSON struct {
	versioned
	*stats.Stats
	Config repository.Config `json:"config"`
}

// copyJSON is what 'copy --json' prints.
type copyJSON struct {
	versioned
	Copied           []copier.Copied `json:"copied"`
	Skipped          []copier.Copied `json:"skipped"`
	Failed           []copier.Failed `json:"failed"`
	OlderThanLast    []string        `json:"older_than_last_copy"`
	WALCopied        int64           `json:"wal_copied"`
	AuditEntries     int             `json:"audit_entries_copied"`
	BlobsRead        int64           `json:"blobs_read"`
	BytesRead        int64           `json:"bytes_read"`
	BlobsNew         int64           `json:"blobs_new"`
	BytesStored      int64           `json:"bytes_stored"`
	Unreadable       []string        `json:"unreadable"`
	UnreadableExpiry []string        `json:"unreadable_expiry_records"`
	DurationSeconds  float64         `json:"duration_seconds"`
	ReadMiBPerSecond float64         `json:"read_mib_per_second"`
	ReadMBPerS       float64         `json:"read_mb_per_s"` // the old name, in decimal MB/s
}

// pgBackupJSON is what 'pg backup --json' prints.
type pgBackupJSON struct {
	versioned
	Snapshot         string            `json:"snapshot"`
	ShortID          string            `json:"short_id"`
	Summary          *snapshot.Summary `json:"summary"`
	Backup           *pg.BackupInfo    `json:"backup"`
	DurationSeconds  float64           `json:"duration_seconds"`
	ReadMiBPerSecond float64           `json:"read_mib_per_second"`
}

// pgRestoreJSON is what 'pg restore --json' prints when it succeeds.
type pgRestoreJSON struct {
	versioned
	*pg.RestoreResult
}

// pgRestoreFailedJSON is what 'pg restore --json' prints when it fails
// after it began to write.
type pgRestoreFailedJSON struct {
	versioned
	Result *pg.RestoreResult `json:"result"`
	Error  string            `json:"error"`
}

// pgStatusJSON is what 'pg status --json' prints.
type pgStatusJSON struct {
	versioned
	*pg.StatusReport
	// After is the window after WAL expiry with --keep-pitr.
	After *pitrPreview `json:"keep_pitr,omitempty"`
}

// forgetJSON is what 'forget --json' prints.
type forgetJSON struct {
	versioned
	DryRun     bool              `json:"dry_run"`
	Groups     []forgetGroupJSON `json:"groups"`
	Kept       int               `json:"kept"`
	Removed    int               `json:"removed"` // in a dry run: would be
	Retained   int               `json:"retained"`
	Failed     int               `json:"failed"`
	Unreadable []string          `json:"unreadable"`
	// Prune is what --prune did; omitted when it did not run.
	Prune *pruneJSON `json:"prune,omitempty"`
	// PITRBefore and PITRAfter are the PostgreSQL recovery windows now and
	// after this forget and prune (dry run, base backups only).
	PITRBefore []pg.Window  `json:"pitr_before,omitempty"`
	PITRAfter  *pitrPreview `json:"pitr_after,omitempty"`
}

// forgetGroupJSON is one group of 'forget --json'.
type forgetGroupJSON struct {
	Group         policy.GroupKey   `json:"group"`
	PolicyFrom    string            `json:"policy_from"`
	Policy        *policy.Policy    `json:"policy,omitempty"`
	ReferenceTime time.Time         `json:"reference_time,omitzero"`
	Snapshots     []forgetEntryJSON `json:"snapshots"`
}

// forgetEntryJSON is one snapshot of a group of 'forget --json'.
type forgetEntryJSON struct {
	ID        string          `json:"id"`
	ShortID   string          `json:"short_id"`
	Time      time.Time       `json:"time"`
	Hostname  string          `json:"hostname"`
	Paths     []string        `json:"paths"`
	Tags      []string        `json:"tags"`
	Class     string          `json:"class,omitempty"`
	KeepUntil time.Time       `json:"keep_until,omitzero"`
	Action    string          `json:"action"`
	Reasons   []policy.Reason `json:"reasons"`
	Vetoes    []forget.Veto   `json:"vetoes"`
	Removed   bool            `json:"removed"`
	Error     string          `json:"error,omitempty"`
	Damaged   string          `json:"damaged,omitempty"`
}

func forgetReportJSON(rep *forget.Report) forgetJSON {
	out := forgetJSON{versioned: current(), DryRun: rep.DryRun, Groups: []forgetGroupJSON{}, Unreadable: []string{},
		Kept: rep.Count(forget.Keep), Removed: rep.Removed(), Retained: rep.Count(forget.Retain), Failed: len(rep.Failed())}
	for _, e := range rep.Unreadable {
		out.Unreadable = append(out.Unreadable, e.Error())
	}
	for _, g := range rep.Groups {
		gj := forgetGroupJSON{Group: g.Key, PolicyFrom: g.Source, ReferenceTime: g.Ref, Snapshots: []forgetEntryJSON{}}
		if !g.Policy.Empty() {
			p := g.Policy
			gj.Policy = &p
		}
		for _, e := range g.Entries {
			sn := e.Snapshot
			ej := forgetEntryJSON{ID: sn.ID.String(), ShortID: sn.ID.Short(), Time: sn.Time, Hostname: sn.Hostname,
				Paths: nonNil(sn.Paths), Tags: nonNil(sn.Tags), Class: sn.Class, KeepUntil: sn.KeepUntil, Action: string(e.Action),
				Reasons: nonNil(e.Reasons), Vetoes: nonNil(e.Vetoes), Removed: e.Removed}
			if e.Err != nil {
				ej.Error = e.Err.Error()
			}
			if e.Damaged != nil {
				ej.Damaged = e.Damaged.Error()
			}
			gj.Snapshots = append(gj.Snapshots, ej)
		}
		out.Groups = append(out.Groups, gj)
	}
	return out
}
