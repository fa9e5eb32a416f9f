package pg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// controlData is what nestguard reads from a global/pg_control file (the
// server's ControlFileData, in the machine's byte order).
type controlData struct {
	SystemID uint64
	Version  uint32 // pg_control_version: 1002 (PostgreSQL 10), 1100, 1201, 1300, 1700, ...
	// Redo and Timeline are those of the latest checkpoint: its redo
	// location, where replay from it starts, and the timeline it was on.
	Redo     LSN
	Timeline uint32
	State    uint32 // DBState: dbShutdownedInRecovery, ...
}

// dbShutdownedInRecovery is the DBState of a server that shut down
// cleanly during archive recovery: at a recovery target with
// recovery_target_action = shutdown. A server that failed during
// recovery (FATAL) leaves dbInArchiveRecovery.
const (
	dbShutdownedInRecovery = 2
	dbInArchiveRecovery    = 5
)

var (
	errShortControl   = errors.New("pg_control is too short")
	errControlVersion = errors.New("unknown pg_control version")
)

// parseControl reads the fields of pg_control nestguard needs. Their
// offsets have been the same since PostgreSQL 11; 10 kept the previous
// checkpoint's location before the checkpoint copy.
func parseControl(b []byte) (controlData, error) {
	var c controlData
	if len(b) < 64 {
		return c, fmt.Errorf("%w: %d bytes", errShortControl, len(b))
	}
	e := binary.NativeEndian
	c.SystemID = e.Uint64(b[0:])
	c.Version = e.Uint32(b[8:])
	c.State = e.Uint32(b[16:]) // after catalog_version_no, since 9.0
	ckpt := 40                 // ControlFileData.checkPointCopy
	switch {
	case c.Version == 1002:
		ckpt = 48
	case c.Version < 1100 || c.Version > 9999:
		return c, fmt.Errorf("%w %d (nestguard knows PostgreSQL 10 or later): wrong byte order or not a pg_control file", errControlVersion, c.Version)
	}
	c.Redo = LSN(e.Uint64(b[ckpt:]))
	c.Timeline = e.Uint32(b[ckpt+8:])
	return c, nil
}

// readControl reads the pg_control of data directory dir. On a parse
// error the system identifier is still set, if the file is long enough.
func readControl(dir string) (controlData, error) {
	p := filepath.Join(dir, controlFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return controlData{}, err
	}
	c, err := parseControl(b)
	if err != nil {
		return c, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}
