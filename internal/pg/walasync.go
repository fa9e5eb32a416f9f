package pg

// Asynchronous archiving (archive-wal --async): PostgreSQL's
// archive_command contract is kept (exit 0 only once the file is durable
// in the repository), but the work is done by one background worker that
// looks ahead in PostgreSQL's queue (archive_status/*.ready), so that the
// call PostgreSQL waits on usually only finds the acknowledgement the
// worker left: a marker in a spool directory naming the file, its size and
// the identity of the file the worker read (device, inode, times), or its
// BLAKE3 digest where files have no identity.
//
// The spool (default pg_wal/.nestguard-archive) holds:
//
//	.lock           flock'ed by the one running worker
//	NAME.ok         written by the worker once NAME is durable and recorded
//	NAME.error      written by the worker when archiving NAME failed
//	global.error    written when the worker itself failed (cannot open the repository)
//	.tmp-*          markers being written
//
// A marker is trusted only when its name, size and identity (or digest)
// match the file PostgreSQL asks for now; anything else (a torn, stale or
// forged marker, or one for a copy of the file) is removed and the worker
// asked again, which then finds the name stored and compares.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nestguard/nestguard/internal/pgmeta"
)

// Defaults of the asynchronous mode.
const (
	// DefaultArchiveTimeout is how long a call waits for the worker's
	// acknowledgement (pgBackRest's archive-timeout is the same minute).
	DefaultArchiveTimeout = time.Minute
	// DefaultArchiveAhead bounds the segments the worker has in hand at
	// once: read from archive_status, being archived, or awaiting their
	// acknowledgement.
	DefaultArchiveAhead = 32
	// DefaultWorkerIdle is how long the worker waits for more ready
	// segments before it exits.
	DefaultWorkerIdle = 30 * time.Second
	// ArchiveSpoolName is the spool's default directory, in pg_wal.
	ArchiveSpoolName = ".nestguard-archive"
)

// ErrNotQueued is returned by ArchiveWALAsync for a file PostgreSQL has not
// queued (no NAME.ready in archive_status beside it): no worker would find
// it, so the caller archives it itself.
var ErrNotQueued = errors.New("not queued in archive_status")

// AsyncOptions tune ArchiveWALAsync.
type AsyncOptions struct {
	// SpoolDir is the spool; default ArchiveSpoolName beside the file.
	SpoolDir string
	// Timeout bounds the wait for the acknowledgement (default
	// DefaultArchiveTimeout).
	Timeout time.Duration
	// StartWorker starts the background worker (a detached process that
	// calls RunArchiveWorker with this spool). It is called when no worker
	// holds the spool's lock.
	StartWorker func(spool string) error
	// Poll is the interval between looks at the spool (default 5 ms)
	// where directory notifications are unavailable; with them (Linux)
	// the call looks when the spool changes, and at least every
	// watchedPoll.
	Poll time.Duration
	Log  *slog.Logger
}

// AsyncResult describes one acknowledged file.
type AsyncResult struct {
	Name string
	Size int64
	// Waited is how long the call waited for the worker; StartedWorker
	// says whether it had to start one.
	Waited        time.Duration
	StartedWorker bool
}

// ArchiveSpool returns the spool directory of the WAL file at path: dir if
// given, else ArchiveSpoolName in the file's directory.
func ArchiveSpool(path, dir string) string {
	if dir != "" {
		return dir
	}
	return filepath.Join(filepath.Dir(path), ArchiveSpoolName)
}

// ArchiveWALAsync is archive_command's call in the asynchronous mode: it
// returns nil only once the background worker acknowledged the file at
// path (name) as durable in the repository, with this content. It starts
// the worker when none runs, and fails on the worker's error for the file,
// the worker's own failure, or after o.Timeout.
func ArchiveWALAsync(ctx context.Context, path, name string, o AsyncOptions) (AsyncResult, error) {
	began := time.Now()
	res := AsyncResult{Name: name}
	if !pgmeta.IsWALFileName(name) {
		return res, fmt.Errorf("%q is not a WAL file name PostgreSQL archives (segment, .partial, .history or .backup): pass the file as %%p, or its name with --name", name)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultArchiveTimeout
	}
	if o.Poll <= 0 {
		o.Poll = 5 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	spool := ArchiveSpool(path, o.SpoolDir)
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "archive_status", filepath.Base(path)+".ready")); err != nil || filepath.Base(path) != name {
		return res, ErrNotQueued
	}
	if err := makeSpool(spool); err != nil {
		return res, err
	}
	watch := watchDirs(spool)
	defer watch.Close()
	poll := o.Poll
	if watch != nil {
		poll = max(poll, watchedPoll)
	}
	var (
		have      *fileDigest // the file's, once hashed
		lastStart time.Time
		lastProbe time.Time
	)
	check := func(m okMarker) (bool, error) {
		// The very file the worker read (its identity unchanged since) is
		// acknowledged; any other file is not, whatever it holds: the
		// worker, asked again, compares it with the stored copy. Only a
		// marker without an identity (a system without one) names the
		// content, and the file is then hashed.
		if m.ident != (fileIdent{}) {
			fi, err := os.Stat(path)
			if err != nil {
				return false, err
			}
			if id, ok := identOf(fi); ok && id == m.ident && id.Size == m.size {
				res.Size = m.size
				return true, nil
			}
			return false, fmt.Errorf("%w: it names another file than %s (device, inode, size or times differ)", errAckMismatch, path)
		}
		if have == nil {
			d, err := digestFile(path, name)
			if err != nil {
				return false, err
			}
			have = d
		}
		if m.size == have.size && m.sum == have.sum {
			res.Size = m.size
			return true, nil
		}
		return false, fmt.Errorf("%w: it names %d bytes with digest %x, the file has %d bytes with digest %x", errAckMismatch, m.size, m.sum, have.size, have.sum)
	}
	deadline := began.Add(o.Timeout)
	for {
		done, err := checkMarkers(spool, name, check, o.Log)
		if done {
			res.Waited = time.Since(began)
			return res, nil
		}
		if err != nil {
			return res, err
		}
		if time.Since(lastProbe) >= 100*time.Millisecond {
			lastProbe = time.Now()
			if err := startIfIdle(spool, &res, &lastStart, o.StartWorker); err != nil {
				return res, err
			}
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%s was not acknowledged within %s: the background worker (spool %s) has not stored it; PostgreSQL keeps the file and calls again", name, o.Timeout, spool)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-watch.C():
		case <-time.After(poll):
		}
	}
}

// startIfIdle starts a worker when none holds the spool, at most once a
// second. If the one this call started is gone with an error, that is
// the call's; a failure left by an earlier worker is not.
func startIfIdle(spool string, res *AsyncResult, lastStart *time.Time, start func(string) error) error {
	if spoolBusy(spool) {
		return nil
	}
	if b, err := os.ReadFile(filepath.Join(spool, globalErrorName)); err == nil && res.StartedWorker {
		return fmt.Errorf("the background WAL archiver failed: %s", parseError(b))
	}
	if time.Since(*lastStart) < time.Second {
		return nil
	}
	os.Remove(filepath.Join(spool, globalErrorName))
	if start == nil {
		return errors.New("no background worker runs and none can be started")
	}
	if err := start(spool); err != nil {
		return fmt.Errorf("starting the background WAL archiver: %w", err)
	}
	*lastStart, res.StartedWorker = time.Now(), true
	return nil
}

// fileDigest is what an acknowledgement must name.
type fileDigest struct {
	size int64
	sum  [32]byte
}

// fileIdent identifies a file as it was read (identOf): a file with the
// same identity since has the same content.
type fileIdent struct {
	Dev, Ino     uint64
	Size         int64
	Mtime, Ctime int64 // ns
}

// digestFile reads the file to archive as the worker does and hashes it.
func digestFile(path, name string) (*fileDigest, error) {
	data, release, _, err := loadWALFile(path, name, nil)
	if err != nil {
		return nil, err
	}
	defer release()
	return &fileDigest{size: int64(len(data)), sum: contentDigest(data)}, nil
}

// checkMarkers looks for the worker's word on name: done once an
// acknowledgement is there that check accepts for the file as it is; an
// error when the worker failed on it (the marker is then removed, so that
// the next call asks again).
func checkMarkers(spool, name string, check func(okMarker) (bool, error), log *slog.Logger) (bool, error) {
	okPath := filepath.Join(spool, name+".ok")
	b, err := os.ReadFile(okPath)
	switch {
	case err == nil:
		m, perr := parseOK(b)
		if perr == nil && m.name == name {
			var ok bool
			if ok, perr = check(m); ok {
				return true, nil
			}
			if perr != nil && !errors.Is(perr, errAckMismatch) {
				return false, perr // the file could not be read
			}
		} else if perr == nil {
			perr = fmt.Errorf("it names %s", m.name)
		}
		// Not this file: never trusted, and out of the way of the
		// worker's answer for the file as it is.
		log.Warn("ignoring an acknowledgement that does not match the WAL file", "file", name, "marker", okPath, "err", perr)
		if err := os.Remove(okPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("removing the unusable acknowledgement %s: %w", okPath, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("reading the acknowledgement of %s: %w", name, err)
	}
	errPath := filepath.Join(spool, name+".error")
	if b, err := os.ReadFile(errPath); err == nil {
		os.Remove(errPath)
		return false, fmt.Errorf("the background worker could not archive %s: %s", name, parseError(b))
	}
	return false, nil
}

// errAckMismatch: an acknowledgement names other content than the file's.
var errAckMismatch = errors.New("not this file's acknowledgement")

// Marker files.
const (
	okHeader        = "nestguard archive-wal ok v2"
	errorHeader     = "nestguard archive-wal error v1"
	globalErrorName = "global.error"
)

// okMarker is an acknowledgement: the file's name and size, and either the
// identity of the file the worker read or, where it had none, the digest
// of its content.
type okMarker struct {
	name  string
	size  int64
	ident fileIdent // zero: none, sum names the content
	sum   [32]byte
}

// formatOK writes an acknowledgement naming id, or sum when id is zero.
func formatOK(name string, size int64, id fileIdent, sum [32]byte) []byte {
	b := fmt.Appendf(nil, "%s\nname %s\nsize %d\n", okHeader, name, size)
	if id != (fileIdent{}) {
		return fmt.Appendf(b, "file %d %d %d %d\n", id.Dev, id.Ino, id.Mtime, id.Ctime)
	}
	return fmt.Appendf(b, "blake3 %x\n", sum)
}

// parseOK accepts exactly what formatOK writes: a torn or edited marker is
// not an acknowledgement.
func parseOK(b []byte) (okMarker, error) {
	var m okMarker
	bad := errors.New("not a complete acknowledgement")
	lines := strings.Split(string(b), "\n")
	if len(lines) != 5 || lines[0] != okHeader || lines[4] != "" {
		return m, bad
	}
	name, ok1 := strings.CutPrefix(lines[1], "name ")
	size, ok2 := strings.CutPrefix(lines[2], "size ")
	if !ok1 || !ok2 || !pgmeta.IsWALFileName(name) {
		return m, bad
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != size {
		return m, errors.New("a bad size")
	}
	m.name, m.size = name, n
	if sum, ok := strings.CutPrefix(lines[3], "blake3 "); ok {
		d, err := hex.DecodeString(sum)
		if err != nil || len(d) != 32 || strings.ToLower(sum) != sum {
			return m, errors.New("a bad digest")
		}
		copy(m.sum[:], d)
		return m, nil
	}
	file, ok := strings.CutPrefix(lines[3], "file ")
	f := strings.Split(file, " ")
	if !ok || len(f) != 4 {
		return m, bad
	}
	var id [2]uint64
	var at [2]int64
	for i, x := range f {
		var err error
		var canon string
		if i < 2 {
			id[i], err = strconv.ParseUint(x, 10, 64)
			canon = strconv.FormatUint(id[i], 10)
		} else {
			at[i-2], err = strconv.ParseInt(x, 10, 64)
			canon = strconv.FormatInt(at[i-2], 10)
		}
		if err != nil || canon != x {
			return m, errors.New("a bad file identity")
		}
	}
	m.ident = fileIdent{Dev: id[0], Ino: id[1], Size: n, Mtime: at[0], Ctime: at[1]}
	if m.ident == (fileIdent{Size: n}) {
		return m, errors.New("a bad file identity")
	}
	return m, nil
}

func formatError(name string, err error) []byte {
	return fmt.Appendf(nil, "%s\nname %s\n%s\n", errorHeader, name, strings.TrimSpace(err.Error()))
}

// parseError returns an error marker's message.
func parseError(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var msg []string
	for i := 0; sc.Scan(); i++ {
		if i >= 2 {
			msg = append(msg, sc.Text())
		}
	}
	if len(msg) == 0 || !bytes.HasPrefix(b, []byte(errorHeader+"\n")) {
		return "(unreadable error marker)"
	}
	return strings.Join(msg, "\n")
}

// writeMarker replaces spool/name with b by rename. It is not synced: a
// marker lost or torn by a crash is not an acknowledgement (parseOK), and
// the file is then archived again, which finds it stored and identical.
func writeMarker(spool, name string, b []byte) error {
	f, err := os.CreateTemp(spool, ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(spool, name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s in the WAL archive spool: %w", name, err)
	}
	return nil
}

// WriteWorkerError leaves err where waiting calls report it: the worker
// could not run at all (the repository did not open) or stopped.
func WriteWorkerError(spool string, err error) error {
	if err := makeSpool(spool); err != nil {
		return err
	}
	return writeMarker(spool, globalErrorName, formatError("", err))
}

// makeSpool creates the spool, or checks the one there: a directory of
// this user's that no one else may write, since its markers are trusted.
func makeSpool(spool string) error {
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("WAL archive spool: %w", err)
	}
	fi, err := os.Lstat(spool)
	if err != nil {
		return fmt.Errorf("WAL archive spool: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("WAL archive spool %s is not a directory (a symlink?): give --spool-dir a directory of the database's OS user", spool)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("WAL archive spool %s may be written by others (mode %v): its acknowledgements are trusted, run 'chmod 700 %s'", spool, fi.Mode().Perm(), spool)
	case ok && int(st.Uid) != os.Geteuid():
		return fmt.Errorf("WAL archive spool %s belongs to uid %d, not to this user (%d): its acknowledgements are trusted; give --spool-dir a directory of the database's OS user", spool, st.Uid, os.Geteuid())
	}
	return nil
}
