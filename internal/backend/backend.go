// Package backend defines where a repository's objects are stored. A Backend
// knows nothing about encryption or the repository format: it stores named,
// immutable byte strings grouped by type.
//
// The contract every implementation keeps (and that backendtest checks):
//   - Objects are written once. Save of a name that exists fails with an
//     error that wraps fs.ErrExist and leaves the stored object untouched.
//   - An object is visible to Load, Stat and List only once it is complete
//     and durable; a crash mid-Save leaves either nothing or a temporary that
//     is never listed.
//   - Load, Stat and Remove of a missing object fail with an error wrapping
//     fs.ErrNotExist.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// FileType groups the objects of a repository; each type is a directory
// (local) or key prefix (S3).
type FileType string

// The object types of a repository. See docs/format.md.
const (
	ConfigFile   FileType = "config"    // the single repository config object, name "config"
	KeyFile      FileType = "keys"      // key slots: the master key wrapped per passphrase
	PackFile     FileType = "data"      // packs of encrypted blobs, stored under data/<2 hex>/<id>
	IndexFile    FileType = "index"     // which blob is in which pack
	SnapshotFile FileType = "snapshots" // one object per snapshot
	WALFile      FileType = "wal"       // PostgreSQL WAL segments and history files
	HoldFile     FileType = "holds"     // legal hold records
	// CandidateFile holds prune's deletion-candidate records: packs a later
	// prune may delete (internal/candidates, docs/format.md "Prune").
	CandidateFile FileType = "candidates"
	// AuditFile holds the audit trail: the log's entries and its sealed
	// signing key (internal/audit, docs/audit.md).
	AuditFile FileType = "audit"
	// LockFile holds the lock records of running prunes, which keep two
	// prunes from running at once (internal/prune, docs/format.md
	// "Prune").
	LockFile FileType = "locks"
	// ExpiryFile holds WAL expiry records: per PostgreSQL database system,
	// the WAL position before which prune removed WAL on purpose
	// (internal/walexpiry, docs/format.md "WAL expiry records").
	ExpiryFile FileType = "expiry"
)

// ObjectTypes returns every type but ConfigFile: the types of which a
// repository holds any number of named objects (a local directory's
// subdirectories, S3's key prefixes). It is the one list of them: what
// lays out, lists or counts every type takes it from here.
func ObjectTypes() []FileType {
	return []FileType{KeyFile, PackFile, IndexFile, SnapshotFile, WALFile, HoldFile, CandidateFile, AuditFile, LockFile, ExpiryFile}
}

// Handle names one object.
type Handle struct {
	Type FileType
	Name string
}

func (h Handle) String() string {
	if h.Type == ConfigFile {
		return string(ConfigFile)
	}
	return string(h.Type) + "/" + h.Name
}

// FileInfo describes a stored object.
type FileInfo struct {
	Name string
	Size int64
	// ModTime is when the object was stored (file mtime, S3 LastModified).
	// The PostgreSQL WAL window is dated by it.
	ModTime time.Time
}

// Backend stores and retrieves objects. Implementations are safe for
// concurrent use.
type Backend interface {
	// Location names the backend for messages, without credentials.
	Location() string

	// Save stores rd (size bytes) as h. rd is read from its current
	// position; a retrying implementation seeks back to the start.
	Save(ctx context.Context, h Handle, rd io.ReadSeeker, size int64) error

	// Load returns length bytes of h starting at offset; length 0 means to
	// the end. The caller closes the reader.
	Load(ctx context.Context, h Handle, offset, length int64) (io.ReadCloser, error)

	// Stat returns the size of h.
	Stat(ctx context.Context, h Handle) (FileInfo, error)

	// List calls fn for every object of type t, in no particular order.
	// An error from fn stops the listing and is returned.
	List(ctx context.Context, t FileType, fn func(FileInfo) error) error

	// Remove deletes h. Repositories under retention never call it for
	// locked objects.
	Remove(ctx context.Context, h Handle) error

	// Close releases resources.
	Close() error
}

// CheckSave returns the error a Save of size bytes as h fails with before
// it reads anything: a negative size or a cancelled context. Every backend
// starts its Save with it.
func CheckSave(ctx context.Context, h Handle, size int64) error {
	if size < 0 {
		return fmt.Errorf("saving %s: negative size %d", h, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saving %s: %w", h, err)
	}
	return nil
}

// RetentionMode is an S3 Object Lock mode.
type RetentionMode string

// Object Lock modes. Compliance cannot be shortened or removed by anyone
// until it expires; governance can be by a specially privileged user.
const (
	Governance RetentionMode = "GOVERNANCE"
	Compliance RetentionMode = "COMPLIANCE"
)

// Retention is what an immutable (WORM) store reports and sets for one object.
type Retention struct {
	Mode      RetentionMode // empty when the object has none
	Until     time.Time
	LegalHold bool
}

// Locker is implemented by backends that enforce write-once retention, such
// as S3 buckets with Object Lock. Callers discover it with a type assertion.
type Locker interface {
	// LockEnabled reports whether the store enforces retention at all
	// (for S3: Object Lock is enabled on the bucket).
	LockEnabled(ctx context.Context) (bool, error)
	// SetRetention sets or extends the retention of h. Implementations
	// never shorten an existing retention (an earlier until is a no-op)
	// and never change the mode of an object that has one: mode applies
	// to an object without retention. (On S3, changing governance to
	// compliance would need the permission to bypass governance, which
	// nestguard never asks for.)
	SetRetention(ctx context.Context, h Handle, mode RetentionMode, until time.Time) error
	// SetLegalHold places or releases a legal hold on h.
	SetLegalHold(ctx context.Context, h Handle, on bool) error
	// Retention reports the retention state of h.
	Retention(ctx context.Context, h Handle) (Retention, error)
}

// Streamer is implemented by backends that can store an object while it is
// being produced, before its name is known: packs are named by the hash of
// their content, and a backend that can stream them spares the writer a
// pack-sized buffer. Callers discover it with a type assertion and buffer
// the object themselves otherwise.
type Streamer interface {
	// Create starts an object of type t. Nothing is visible until Commit.
	Create(ctx context.Context, t FileType) (PendingObject, error)
}

// PendingObject is an object being written by a Streamer.
type PendingObject interface {
	io.Writer
	// Commit makes what was written durable and visible as name, with
	// Save's guarantees: it never replaces an existing object (the error
	// wraps fs.ErrExist). The pending object is finished either way.
	Commit(ctx context.Context, name string) error
	// Abort discards what was written. It is a no-op after Commit.
	Abort() error
}

// Lender is implemented by a PendingObject that can lend the memory its
// next bytes will be written from (a local pack written past the page
// cache: its blocks), so that a writer produces them in place instead of
// writing a copy: a backup seals each blob straight into its pack.
type Lender interface {
	// Lend returns memory for the next n bytes of the object, which the
	// caller fills before it calls any other method of the object. It
	// returns nil, and nothing changes, when it cannot lend n bytes at
	// once: the caller writes them then.
	Lend(n int) []byte
}

// DeferredSaver is implemented by stores where an object's name becomes
// durable only with a sync of its directory (a local directory): a
// caller storing many objects at once saves each with SaveDeferred and
// then syncs their directories once with SyncNames.
type DeferredSaver interface {
	// SaveDeferred is Save, except that the object's name may not survive
	// a crash until SyncNames: its data is durable, and it is visible.
	SaveDeferred(ctx context.Context, h Handle, rd io.ReadSeeker, size int64) error
	// SyncNames makes the names of hs durable.
	SyncNames(ctx context.Context, hs []Handle) error
}

// ErrFull is matched (errors.Is) by a write the storage refused for lack
// of space: a local directory's file system or quota is full.
var ErrFull = errors.New("the storage is full")

// LocationError is an error in how the storage is named (an S3 endpoint
// that cannot be used as written): a mistake in the command line, the
// environment or the configuration, not a failure of the store. Its
// message never repeats what may hold a secret (credentials, a query).
type LocationError struct{ Msg string }

func (e *LocationError) Error() string { return e.Msg }

// ErrUnavailable is matched (errors.Is) by an operation that failed
// because the storage did not answer, or answered only with failures that
// may pass (throttling such as S3's 503 SlowDown, server errors,
// timeouts, refused or broken connections), until the retries gave up
// (package retry). It says nothing about the objects themselves: an
// object that could not be read for it is not known to be damaged or
// missing, and the operation may succeed when the store answers again.
var ErrUnavailable = errors.New("the storage is unavailable")

// FullAdvice says what to do about a full storage. A writer that failed
// for it removed what it had started; what was saved before is intact.
const FullAdvice = "nothing saved before is lost; to make room, remove snapshots ('nestguard forget', then 'nestguard prune', which needs a few KiB for its lock record: if even that fails, first delete the repository's .tmp-* files that are older than every nestguard command still running), or grow the volume; then run the command again"

// StaleTempAge is the age past which temporary data of an interrupted
// writer is removed (see TempCleaner): a day. A running writer renews its
// temporary file's mtime with every write, and no single S3 multipart
// upload (an object above 32 MiB; packs are 16 MiB) takes anywhere near a
// day, so nothing a running command still writes is that old.
const StaleTempAge = 24 * time.Hour

// TempCleaner is implemented by backends where a writer that is killed
// leaves temporary data behind, never listed but taking space: temporary
// files of a local directory, incomplete multipart uploads on S3. Every
// command that writes to a repository calls it first (see
// repository.CleanStaleTemp).
type TempCleaner interface {
	// CleanTemp removes the temporary data older than olderThan and
	// returns how many temporary files or uploads it removed.
	CleanTemp(ctx context.Context, olderThan time.Duration) (int, error)
}

// Clock is implemented by stores on another machine that tell their own
// time (S3, in every response's Date header): a writer judges whether a
// prune's deletion-candidate record is due by it, not only by this host's
// clock, which may be off (docs/format.md, "Prune").
type Clock interface {
	// StoreTime returns the store's time now, as precise as it tells
	// (S3: to the second, rounded down, from a clock some servers read
	// once a second, so up to 2 s behind); the zero time when this answer
	// did not say, or when a wrapper's store tells none (package retry).
	StoreTime(ctx context.Context) (time.Time, error)
}

// Concurrency is implemented by stores that want more requests in flight
// than a local disk does: object stores, where each request waits on the
// network. Others get DefaultConcurrency.
type Concurrency interface {
	// Concurrency returns how many objects to write and to read at once.
	Concurrency() (writes, reads int)
}

// ConcurrencyOf returns how many objects to write and read at once on be:
// what the store asks for (Concurrency), else 2 writes and 4 reads, which
// keep a disk busy without seeking it to death.
func ConcurrencyOf(be Backend) (writes, reads int) {
	if c, ok := As[Concurrency](be); ok {
		return c.Concurrency()
	}
	return 2, 4
}

// Unwrapper is implemented by backends that wrap another one (retries):
// the capabilities of the inner store are found through them.
type Unwrapper interface {
	Unwrap() Backend
}

// As returns the first backend on the chain from be inward (through
// Unwrapper) that implements T, as T: the one way optional capabilities
// (Locker, TempCleaner, default retention, ...) are discovered, so that a
// wrapper never hides what the store can do.
func As[T any](be Backend) (T, bool) {
	for be != nil {
		if c, ok := be.(T); ok {
			return c, true
		}
		u, ok := be.(Unwrapper)
		if !ok {
			break
		}
		be = u.Unwrap()
	}
	var zero T
	return zero, false
}

// NameLister is implemented by a store that lists names more cheaply than
// List, which also gives sizes and times (a local directory: no stat of
// every file).
type NameLister interface {
	ListNames(ctx context.Context, t FileType, fn func(name string) error) error
}

// ListNames calls fn with the name of every object of type t, through the
// store's NameLister if the backend is one (not one it wraps), else
// through List.
func ListNames(ctx context.Context, be Backend, t FileType, fn func(name string) error) error {
	if nl, ok := be.(NameLister); ok {
		return nl.ListNames(ctx, t, fn)
	}
	return be.List(ctx, t, func(fi FileInfo) error { return fn(fi.Name) })
}

// WholeLoader is implemented by a store that reads a whole small object
// more cheaply than through Load (a local directory: one open, one stat,
// one read, where an os.File and a growing buffer take three times the
// system calls). ReadAll uses it; so must an implementation's limit: an
// object larger than limit is an error, read no further.
type WholeLoader interface {
	LoadAll(ctx context.Context, h Handle, limit int64) ([]byte, error)
}

// WholeReader reads whole objects of one type, each as ReadAll reads
// one (an object larger than limit is an error), for a caller that reads
// many: Verify of an audit log reads a million small entries. It is safe
// for concurrent use.
type WholeReader interface {
	// ReadAll returns the whole of the object name, into buf's storage
	// when it fits (buf may be nil; a caller that reuses buf must be done
	// with the bytes returned before).
	ReadAll(ctx context.Context, name string, limit int64, buf []byte) ([]byte, error)
	Close() error
}

// WholeReaderOpener is implemented by a store that reads many whole
// objects of one type more cheaply through something opened once (a
// local directory: each object opened relative to the type's directory,
// with no path walk and no stat).
type WholeReaderOpener interface {
	OpenWholeReader(ctx context.Context, t FileType) (WholeReader, error)
}

// OpenWholeReader returns a reader of whole objects of type t on be: the
// store's own if the backend is a WholeReaderOpener (not one it wraps, as
// for ReadAll), else one that reads each object through ReadAll.
func OpenWholeReader(ctx context.Context, be Backend, t FileType) (WholeReader, error) {
	if o, ok := be.(WholeReaderOpener); ok {
		return o.OpenWholeReader(ctx, t)
	}
	return readAllReader{be: be, t: t}, nil
}

// readAllReader is a WholeReader through ReadAll.
type readAllReader struct {
	be Backend
	t  FileType
}

func (r readAllReader) ReadAll(ctx context.Context, name string, limit int64, _ []byte) ([]byte, error) {
	return ReadAll(ctx, r.be, Handle{Type: r.t, Name: name}, limit)
}

func (r readAllReader) Close() error { return nil }

// ReadAll loads the whole of h, refusing an object larger than limit
// bytes: a stored object is never trusted to be as small as nestguard
// writes it (a planted one could fill memory). A backend that is itself a
// WholeLoader (not one it wraps: a wrapper may change what Load does)
// reads it in one go.
func ReadAll(ctx context.Context, be Backend, h Handle, limit int64) ([]byte, error) {
	if wl, ok := be.(WholeLoader); ok {
		return wl.LoadAll(ctx, h, limit)
	}
	rd, err := be.Load(ctx, h, 0, 0)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	b, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", h, limit)
	}
	return b, nil
}
