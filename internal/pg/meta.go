// Package pg backs up and restores PostgreSQL clusters: base backups taken
// with the non-exclusive low-level API, continuous WAL archiving through
// archive_command and restore_command, and point-in-time recovery.
package pg

import "github.com/nestguard/nestguard/internal/pgmeta"

// What a base backup records and how WAL is named belong to
// internal/pgmeta, which packages that only read snapshots use; pg names
// its types as its own.
type (
	LSN         = pgmeta.LSN
	BackupInfo  = pgmeta.BackupInfo
	Tablespace  = pgmeta.Tablespace
	CorruptPage = pgmeta.CorruptPage
	Segment     = pgmeta.Segment
)
