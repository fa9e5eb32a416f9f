package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nestguard/nestguard/internal/atomicfile"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
)

// DefaultPrefetch is how many segments restore-wal keeps ready ahead of
// the one PostgreSQL asks for.
const DefaultPrefetch = 8

// RestoreWALOptions tune RestoreWAL.
type RestoreWALOptions struct {
	// Prefetch is how many segments after a requested one are fetched into
	// the spool, so that the next requests are a rename (0: none).
	Prefetch int
	// SpoolDir holds prefetched segments; default .nestguard-spool next to
	// dest (inside pg_wal, so that taking a segment is a rename).
	SpoolDir string
	// Parallel bounds concurrent fetches (default 4).
	Parallel int
	// Session binds the spool to one restore: 'nestguard pg restore'
	// writes a fresh one into restore_command (--spool-session) and
	// prefills the spool under it. Without it, the spool is bound to the
	// running server (its postmaster.pid). See SpoolIdentity.
	Session string
	// Background, if set, is handed the segments to prefetch instead of
	// RestoreWAL fetching them before it returns: the command starts a
	// detached process, so that fetching overlaps with replay.
	Background func(spool string, names []string) error
	Log        *slog.Logger
}

func (o *RestoreWALOptions) defaults(dest string) {
	if o.SpoolDir == "" {
		o.SpoolDir = DefaultSpoolDir(dest)
	}
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// ErrNotArchived is wrapped by RestoreWAL's error for a file the repository
// does not hold, and only by it: for PostgreSQL that is the end of the
// archive. It wraps fs.ErrNotExist; a missing key file or destination
// directory wraps fs.ErrNotExist too, but not ErrNotArchived.
var ErrNotArchived = fmt.Errorf("%w", fs.ErrNotExist)

// RestoreWAL writes WAL file name from repo to dest, as restore_command:
// it returns nil only once dest is completely written (renamed into place
// whole, not synced: see restoredWrite). A file
// not in the repository yields an error wrapping ErrNotArchived (normal:
// PostgreSQL asks for files past the end of the archive, and for history
// files that never existed); a damaged one an error wrapping
// repository.ErrObjectCorrupted, and dest is not written.
func RestoreWAL(ctx context.Context, repo WALRepo, name, dest string, o RestoreWALOptions) error {
	o.defaults(dest)
	if !pgmeta.IsWALFileName(name) {
		return fmt.Errorf("%q is not a WAL file name: restore_command passes it as %%f", name)
	}
	prefetch := o.Prefetch > 0 && pgmeta.IsSegment(name)
	if prefetch {
		if spoolOwned(o.SpoolDir, SpoolIdentity(o.Session, dest)) {
			cleanSpool(o.SpoolDir, name, o.Log)
			ok, err := takeFromSpool(o.SpoolDir, name, dest)
			if err != nil {
				o.Log.Warn("prefetched WAL unusable, fetching it again", "file", name, "err", err)
			}
			if ok {
				o.Log.Debug("WAL file from the spool", "file", name)
				markServed(o.SpoolDir)
				return startPrefetch(ctx, repo, name, dest, o)
			}
		} else {
			// Another restore's, or another server run's: never used.
			dropSpool(o.SpoolDir, o.Log)
		}
	}
	var bufs hugemem.Pool
	defer bufs.Close()
	data, release, err := loadWAL(ctx, repo, name, &bufs)
	if errors.Is(err, fs.ErrNotExist) {
		switch {
		case prefetch:
			dropBeyondGap(o.SpoolDir, name, o.Log)
		case pgmeta.IsHistory(name) && spoolServed(o.SpoolDir):
			// Recovery asks for the next timeline's history at its start
			// (the spool may hold what 'pg restore' prefetched then) and
			// when it ends, after segments were served: nothing spooled is
			// needed any more. A prefetch still running removes the
			// spool when it is done.
			if spoolBusy(o.SpoolDir) {
				if f, err := os.Create(filepath.Join(o.SpoolDir, spoolEndedFile)); err == nil {
					f.Close()
				}
			}
			dropSpool(o.SpoolDir, o.Log)
		}
		return fmt.Errorf("WAL file %s is not in the repository: %w", name, ErrNotArchived)
	}
	if errors.Is(err, repository.ErrObjectCorrupted) {
		return fmt.Errorf("WAL file %s is damaged in the repository, refusing to restore it: %w", name, err)
	}
	if err != nil {
		return fmt.Errorf("fetching WAL file %s: %w", name, err)
	}
	defer release()
	if err := checkRestored(data, name); err != nil {
		return err
	}
	if err := restoredWrite(dest, data); err != nil {
		return err
	}
	if prefetch {
		markServed(o.SpoolDir)
		return startPrefetch(ctx, repo, name, dest, o)
	}
	return nil
}

// TakeSpooled is restore_command's fast path: if segment name was
// prefetched into a spool bound to this restore (SpoolIdentity), it is
// checked (size and header; its contents were authenticated before it
// was spooled), moved to dest and synced, and the prefetch is topped up
// through o.Background. It does not read the repository: false means
// the caller must (not spooled, not a segment, or the spool is not this
// restore's), and err says why a spooled file was unusable.
func TakeSpooled(name, dest string, o RestoreWALOptions) (bool, error) {
	o.defaults(dest)
	if o.Prefetch <= 0 || o.Background == nil || !pgmeta.IsSegment(name) {
		return false, nil
	}
	ident := SpoolIdentity(o.Session, dest)
	if ident == "" || !spoolOwned(o.SpoolDir, ident) {
		return false, nil
	}
	cleanSpool(o.SpoolDir, name, o.Log)
	ok, err := takeFromSpool(o.SpoolDir, name, dest)
	if !ok {
		return false, err
	}
	o.Log.Debug("WAL file from the spool", "file", name)
	markServed(o.SpoolDir)
	return true, startPrefetch(context.Background(), nil, name, dest, o)
}

// startPrefetch queues the segments after name that the spool lacks.
// Failing to prefetch never fails the restore: the next request fetches.
func startPrefetch(ctx context.Context, repo WALRepo, name, dest string, o RestoreWALOptions) error {
	names, err := prefetchNames(dest, name, o.SpoolDir, o.Prefetch)
	if err != nil || len(names) == 0 {
		if err != nil {
			o.Log.Warn("not prefetching WAL", "err", err)
		}
		return nil
	}
	if spoolBusy(o.SpoolDir) {
		return nil // a prefetch is running; the next request tops up
	}
	if o.Background != nil {
		if err := o.Background(o.SpoolDir, names); err != nil {
			o.Log.Warn("starting the WAL prefetch", "err", err)
		}
		return nil
	}
	if _, err := PrefetchWAL(ctx, repo, o.SpoolDir, SpoolIdentity(o.Session, dest), names, o.Parallel, o.Log); err != nil {
		o.Log.Warn("prefetching WAL", "err", err)
	}
	return nil
}

// prefetchNames lists the segments after name, up to k, that are not in
// the spool. The segment size is read from the restored file's header.
func prefetchNames(dest, name, spool string, k int) ([]string, error) {
	f, err := os.Open(dest)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, longPageHeaderBytes)
	_, err = io.ReadFull(f, hdr)
	f.Close()
	if err != nil {
		return nil, err
	}
	h, err := parseSegmentHeader(hdr)
	if err != nil {
		return nil, err
	}
	seg, err := pgmeta.ParseSegment(name, int64(h.SegSize))
	if err != nil {
		return nil, err
	}
	absent := absentFrom(spool)
	var names []string
	for range k {
		seg = seg.Next()
		n := seg.Name(int64(h.SegSize))
		if absent != "" && n[:8] == absent[:8] && n >= absent {
			break // not archived a moment ago: the foreground asks
		}
		if _, err := os.Stat(filepath.Join(spool, n)); err != nil {
			names = append(names, n)
		}
	}
	return names, nil
}

// spoolAbsentFile names the first segment a prefetch found missing from
// the repository (the end of the archive, so far). For absentFor after,
// prefetches leave it and the later segments of its timeline alone
// instead of asking the repository again for every segment recovery
// replays; a request for the segment itself still reads the repository.
const (
	spoolAbsentFile = ".absent"
	absentFor       = 15 * time.Second
)

// noteAbsent records that segment name was not in the repository.
func noteAbsent(spool, name string) {
	tmp := filepath.Join(spool, ".tmp-absent")
	if os.WriteFile(tmp, []byte(name), 0o600) == nil {
		os.Rename(tmp, filepath.Join(spool, spoolAbsentFile))
	}
}

// absentFrom returns the segment noteAbsent recorded within absentFor,
// or "".
func absentFrom(spool string) string {
	p := filepath.Join(spool, spoolAbsentFile)
	fi, err := os.Stat(p)
	if err != nil || time.Since(fi.ModTime()) > absentFor {
		return ""
	}
	b, err := os.ReadFile(p)
	if err != nil || !pgmeta.IsSegment(string(b)) {
		return ""
	}
	return string(b)
}

// spoolEndedFile asks a running prefetch to remove the spool when it is
// done: recovery ended while it ran.
const spoolEndedFile = ".ended"

// PrefetchWAL fetches names into spool, in parallel, each authenticated
// before it lands there. Names missing from the repository are skipped.
// If another prefetch holds the spool, it returns at once. A spool bound
// to another identity (SpoolIdentity) is emptied first and bound to
// ident. It returns how many files it fetched.
func PrefetchWAL(ctx context.Context, repo WALRepo, spool, ident string, names []string, parallel int, log *slog.Logger) (int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	unlock, ok, err := holdSpool(spool, ident)
	if err != nil || !ok {
		return 0, err
	}
	defer unlock()
	var (
		mu      sync.Mutex
		missing string // the first segment not in the repository
		fetched int
		wg      sync.WaitGroup
		sem     = make(chan struct{}, max(1, parallel))
		bufs    = hugemem.Pool{Keep: max(1, parallel)}
	)
	defer bufs.Close()
	for _, name := range names {
		if !pgmeta.IsWALFileName(name) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			data, release, err := loadWAL(ctx, repo, name, &bufs)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					log.Warn("prefetching WAL", "file", name, "err", err)
				} else if pgmeta.IsSegment(name) {
					mu.Lock()
					if missing == "" || name < missing {
						missing = name
					}
					mu.Unlock()
				}
				return
			}
			defer release()
			if err := putSpooled(spool, name, data, false); err != nil {
				log.Warn("prefetching WAL", "file", name, "err", err)
				return
			}
			mu.Lock()
			fetched++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if missing != "" {
		noteAbsent(spool, missing)
	}
	if _, err := os.Stat(filepath.Join(spool, spoolEndedFile)); err == nil {
		unlock()
		dropSpool(spool, log)
	}
	return fetched, ctx.Err()
}

// holdSpool creates spool, takes its prefetch lock without waiting (ok is
// false when another process holds it) and binds it to ident
// (bindSpool): what a prefetch does before it fetches anything.
func holdSpool(spool, ident string) (unlock func(), ok bool, err error) {
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, false, fmt.Errorf("WAL spool: %w", err)
	}
	unlock, ok, err = lockSpool(spool)
	if err != nil || !ok {
		return nil, false, err
	}
	if err := bindSpool(spool, ident); err != nil {
		unlock()
		return nil, false, err
	}
	return unlock, true, nil
}

// putSpooled writes WAL file name, loaded and authenticated (loadWAL),
// into spool once its header names it: whole (a temporary name, then a
// rename), and synced if durable (the spool's shell fast path takes it
// unchecked; see feedSpool), else as restoredWrite.
func putSpooled(spool, name string, data []byte, durable bool) error {
	if err := checkSegment(data, name); err != nil {
		return err
	}
	p := filepath.Join(spool, name)
	if durable {
		return atomicfile.Write(p, data, 0o600)
	}
	return restoredWrite(p, data)
}

// takeFromSpool moves a prefetched name to dest.
func takeFromSpool(spool, name, dest string) (bool, error) {
	src := filepath.Join(spool, name)
	f, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Cheap check that the file is what it claims: complete and for this
	// position. Its contents were authenticated before it was written.
	hdr := make([]byte, longPageHeaderBytes)
	_, err = io.ReadFull(f, hdr)
	fi, serr := f.Stat()
	f.Close()
	if err == nil {
		err = serr
	}
	if err == nil {
		var h segmentHeader
		if h, err = parseSegmentHeader(hdr); err == nil && fi.Size() != int64(h.SegSize) {
			err = fmt.Errorf("spool file has %d bytes, not %d", fi.Size(), h.SegSize)
		}
	}
	if err != nil {
		os.Remove(src)
		return false, err
	}
	if err := os.Rename(src, dest); err != nil {
		// Another file system (--spool-dir elsewhere): copy.
		data, rerr := os.ReadFile(src)
		if rerr != nil {
			return false, err
		}
		if err := restoredWrite(dest, data); err != nil {
			return false, err
		}
		os.Remove(src)
		return true, nil
	}
	return true, nil
}

// restoredWrite writes a WAL file for recovery, into the spool or at
// restore_command's destination: whole (a temporary name, then a
// rename), but not synced, which would cost a 16 MiB write-back per
// segment while recovery waits. Nothing needs it to survive a crash of
// the operating system: PostgreSQL asks for the file again when it
// recovers after one (and syncs a restored file itself when it keeps it,
// durable_rename in KeepFileRestoredFromArchive), and a spool is bound to
// the boot it was filled in (SpoolIdentity), so a file torn by the crash
// is never handed over. pgBackRest's archive-get does not sync either.
func restoredWrite(path string, data []byte) error {
	return atomicfile.WriteUnsynced(path, data, 0o600)
}

// cleanSpool removes what the request for name makes useless: segments
// before it (on any timeline) and stale temporary files.
func cleanSpool(spool, name string, log *slog.Logger) {
	entries, err := os.ReadDir(spool)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		stale := false
		switch {
		case pgmeta.IsSegment(n):
			// For one segment size, the log/segment part orders positions.
			stale = n[8:] < name[8:]
		case strings.HasPrefix(n, ".tmp-"):
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 10*time.Minute {
				stale = true
			}
		}
		if stale {
			if err := os.Remove(filepath.Join(spool, n)); err != nil {
				log.Debug("cleaning the WAL spool", "err", err)
			}
		}
	}
}

// dropBeyondGap runs when segment name is not in the repository: the
// spool's later segments of its timeline cannot be reached (the end of the
// archive, or a gap), so recovery is over or stuck; an empty spool is
// removed.
func dropBeyondGap(spool, name string, log *slog.Logger) {
	entries, err := os.ReadDir(spool)
	if err != nil {
		return
	}
	for _, e := range entries {
		if n := e.Name(); pgmeta.IsSegment(n) && n[:8] == name[:8] && n > name {
			if err := os.Remove(filepath.Join(spool, n)); err != nil {
				log.Debug("cleaning the WAL spool", "err", err)
			}
		}
	}
	if !spoolBusy(spool) {
		os.Remove(filepath.Join(spool, ".lock"))
		os.Remove(filepath.Join(spool, spoolOwner))
		os.Remove(filepath.Join(spool, spoolServedFile))
		os.Remove(filepath.Join(spool, spoolAbsentFile))
		os.Remove(spool) // only if empty
	}
}

// spoolOwner is the file in a spool that names the restore its segments
// were fetched for (SpoolIdentity).
const spoolOwner = ".owner"

// SpoolIdentity names the restore a spool's segments may be handed to:
// the session 'nestguard pg restore' wrote into restore_command, else the
// running server of the data directory dest is in (PostgreSQL's %p is
// pg_wal/RECOVERYXLOG: the PID and start time in postmaster.pid), else ""
// (no server: restore-wal run by hand). A spool left by another restore
// or an earlier server run never matches, so its files are never used.
// Either is bound to the machine's boot too (Linux's boot_id; "" where it
// cannot be read): spooled files are not synced (restoredWrite), so after
// a crash of the operating system, when they may be torn, the spool is
// another boot's and is emptied, even for a session that goes on.
func SpoolIdentity(session, dest string) string {
	boot := bootID()
	if boot == "" {
		return ""
	}
	if session != "" {
		return "session " + session + " boot " + boot
	}
	abs, err := filepath.Abs(dest)
	if err != nil {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(abs)), "postmaster.pid"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 3 || lines[0] == "" || lines[2] == "" {
		return ""
	}
	return "server " + strings.TrimSpace(lines[0]) + " " + strings.TrimSpace(lines[2]) + " boot " + boot
}

// bootIDFile holds Linux's identity of this boot of the machine.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// bootID is the identity of this boot of the machine, or "" if unknown.
func bootID() string {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// spoolServed is the file in a spool that says a segment was served
// to recovery: a missing history file asked for after that means
// recovery ended.
const spoolServedFile = ".served"

// markServed notes that recovery got a segment (once per spool).
func markServed(spool string) {
	p := filepath.Join(spool, spoolServedFile)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) && os.MkdirAll(spool, 0o700) == nil {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			f.Close()
		}
	}
}

func spoolServed(spool string) bool {
	_, err := os.Stat(filepath.Join(spool, spoolServedFile))
	return err == nil
}

// spoolOwned reports whether spool's segments were fetched for ident.
// A spool without an owner file belongs to ident "" only.
func spoolOwned(spool, ident string) bool {
	b, err := os.ReadFile(filepath.Join(spool, spoolOwner))
	if errors.Is(err, fs.ErrNotExist) {
		return ident == ""
	}
	return err == nil && string(b) == ident+"\n"
}

// bindSpool makes spool ident's, under its lock: another identity's
// segments are removed first.
func bindSpool(spool, ident string) error {
	if spoolOwned(spool, ident) {
		return nil
	}
	entries, err := os.ReadDir(spool)
	if err != nil {
		return fmt.Errorf("WAL spool: %w", err)
	}
	for _, e := range entries {
		if n := e.Name(); pgmeta.IsWALFileName(n) || strings.HasPrefix(n, ".tmp-") || n == spoolServedFile ||
			n == spoolAbsentFile || n == spoolEndedFile {
			if err := os.Remove(filepath.Join(spool, n)); err != nil {
				return fmt.Errorf("WAL spool of another restore: %w", err)
			}
		}
	}
	if ident == "" {
		if err := os.Remove(filepath.Join(spool, spoolOwner)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("WAL spool: %w", err)
		}
		return nil
	}
	return atomicfile.Write(filepath.Join(spool, spoolOwner), []byte(ident+"\n"), 0o600)
}

// dropSpool removes the spool's segments, and the spool, unless a
// prefetch is running.
func dropSpool(spool string, log *slog.Logger) {
	entries, err := os.ReadDir(spool)
	if err != nil || spoolBusy(spool) {
		return
	}
	for _, e := range entries {
		if n := e.Name(); pgmeta.IsSegment(n) || strings.HasPrefix(n, ".tmp-") || n == ".lock" || n == spoolOwner ||
			n == spoolServedFile || n == spoolAbsentFile || n == spoolEndedFile {
			if err := os.Remove(filepath.Join(spool, n)); err != nil {
				log.Debug("cleaning the WAL spool", "err", err)
			}
		}
	}
	os.Remove(spool) // only if empty
}

// lockSpool takes the spool's prefetch lock without waiting; ok is false
// when another process holds it.
func lockSpool(spool string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(filepath.Join(spool, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("WAL spool lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("WAL spool lock: %w", err)
	}
	return func() { f.Close() }, true, nil
}

// spoolBusy reports whether a prefetch holds the spool.
func spoolBusy(spool string) bool {
	if _, err := os.Stat(filepath.Join(spool, ".lock")); err != nil {
		return false
	}
	unlock, ok, err := lockSpool(spool)
	if err != nil {
		return false
	}
	if ok {
		unlock()
	}
	return !ok
}

// pooledLoader is a WALRepo that decompresses into reusable memory
// (repository.Repository).
type pooledLoader interface {
	LoadNamedPooled(ctx context.Context, t backend.FileType, name string, pool *hugemem.Pool) ([]byte, func(), error)
}

// namedLoader is what loadWAL needs of a repository.
type namedLoader interface {
	LoadNamed(ctx context.Context, t backend.FileType, name string) ([]byte, error)
}

// checkRestored checks WAL file name, as loaded from the repository,
// before it is handed to PostgreSQL: a segment (or partial segment) must
// be the whole segment its name says (checkSegment); a history or backup
// history file is text PostgreSQL parses itself.
func checkRestored(data []byte, name string) error {
	if pgmeta.IsSegment(name) || pgmeta.IsPartial(name) {
		if err := checkSegment(data, name); err != nil {
			return fmt.Errorf("WAL file %s from the repository: %w", name, err)
		}
	}
	return nil
}

// ReadWAL reads WAL object name of repo as restore-wal does before it
// writes it for PostgreSQL (loadWAL, then checkRestored): read,
// authenticated (its sealed name included) and decompressed into memory
// from bufs, and a segment checked whole. It returns the size of the WAL
// file; what it read is dropped. 'verify --read-data' reads every WAL
// object with it, so that verify passes exactly what a restore would
// replay. A missing object yields an error wrapping fs.ErrNotExist, a
// damaged one repository.ErrObjectCorrupted (or, for a segment that
// authenticates but is not the segment its name says, checkSegment's
// error).
func ReadWAL(ctx context.Context, repo WALRepo, name string, bufs *hugemem.Pool) (int, error) {
	data, release, err := loadWAL(ctx, repo, name, bufs)
	if err != nil {
		return 0, err
	}
	defer release()
	if err := checkRestored(data, name); err != nil {
		return 0, err
	}
	return len(data), nil
}

// loadWAL loads WAL file name, into memory from bufs where repo can;
// release gives that memory back, and data must not be used after.
func loadWAL(ctx context.Context, repo namedLoader, name string, bufs *hugemem.Pool) (data []byte, release func(), err error) {
	if l, ok := repo.(pooledLoader); ok {
		return l.LoadNamedPooled(ctx, backend.WALFile, name, bufs)
	}
	data, err = repo.LoadNamed(ctx, backend.WALFile, name)
	return data, func() {}, err
}
