package pg

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/pgmeta"
)

// spoolName is the WAL spool's directory inside pg_wal.
const spoolName = ".nestguard-spool"

// DefaultSpoolDir is the WAL spool of a recovery whose restore_command
// writes to dest (pg_wal/RECOVERYXLOG): inside pg_wal, so that taking a
// segment from it is a rename.
func DefaultSpoolDir(dest string) string { return filepath.Join(filepath.Dir(dest), spoolName) }

// spoolFirst wraps restore_command cmd for a restore whose own process
// keeps the spool filled while the server replays ('pg restore --start'):
// a segment already in the spool is handed over by the shell, with a
// rename, and only the rest (history files, a segment the feed has not
// fetched yet) starts cmd. A nestguard process per segment costs 30-50 ms
// of start-up that replay would wait on; the shell and mv cost a few.
// If the rename fails, cmd runs, so a failure is never taken for the end
// of the archive. The shell skips TakeSpooled's checks of size and
// header: what is in the spool was authenticated before it went there,
// and it is whole. That holds in the boot of the machine (boot, Linux's
// boot_id) that wrote restore_command only: restore-wal's own prefetches
// (when this process is gone) do not sync, so after a crash of the
// machine a spooled file may be torn, and PostgreSQL reads a torn or
// zeroed segment as the end of the WAL, which --to-latest would promote
// at. In another boot, or where the boot is unknown (""), every request
// goes to cmd, whose restore-wal empties a spool of another boot.
// The comparison is the shell's own (read, [): no process.
func spoolFirst(cmd, boot string) string {
	if boot == "" || strings.Trim(boot, "0123456789abcdef-") != "" {
		return cmd // (a boot_id is a UUID: nothing to quote)
	}
	return `f=pg_wal/` + spoolName + `/%f; read -r b < ` + bootIDFile + ` && [ "$b" = ` + boot + ` ] && [ -f "$f" ] && mv -f "$f" "%p" || ` + cmd
}

// feedSpoolPoll is how often the feed looks whether the server took a
// segment from the spool.
const feedSpoolPoll = 20 * time.Millisecond

// feedSpool keeps the segments of names that come next in the spool,
// at most ahead of them at a time, until ctx ends or names are all
// fetched: one at a time, in recovery's order, so that it takes one core
// at most while the server replays on another. It holds the spool's lock
// all along, so restore-wal starts no prefetch of its own beside it.
// Each file is synced before it is renamed into the spool: the shell of
// spoolFirst takes whatever is there, also after a crash of the machine,
// when an unsynced file could be torn. Failing only costs speed: the
// server's restore-wal fetches what is not spooled.
func feedSpool(ctx context.Context, repo WALRepo, spool, ident string, names []string, ahead int, log *slog.Logger) {
	unlock, ok, err := holdSpool(spool, ident)
	if err != nil || !ok {
		if err != nil {
			log.Warn("feeding the WAL spool", "err", err)
		}
		return
	}
	defer unlock()
	var bufs hugemem.Pool
	defer bufs.Close()
	walDir := filepath.Dir(spool)
	for _, name := range names {
		if !pgmeta.IsSegment(name) {
			continue
		}
		// Spooled already (by the prefill), or taken by the server.
		if exists(filepath.Join(spool, name)) || exists(filepath.Join(walDir, name)) {
			continue
		}
		for spooledSegments(spool) >= ahead {
			select {
			case <-ctx.Done():
				return
			case <-time.After(feedSpoolPoll):
			}
		}
		data, release, err := loadWAL(ctx, repo, name, &bufs)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, fs.ErrNotExist) {
				log.Warn("feeding the WAL spool", "file", name, "err", err)
			}
			return // the end of the archive, or restore-wal's turn
		}
		err = putSpooled(spool, name, data, true)
		release()
		if err != nil {
			log.Warn("feeding the WAL spool", "file", name, "err", err)
			return
		}
	}
}

// spooledSegments counts the segments waiting in spool.
func spooledSegments(spool string) int {
	entries, err := os.ReadDir(spool)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if pgmeta.IsSegment(e.Name()) {
			n++
		}
	}
	return n
}

// exists reports whether path names a file (after links).
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
