// Package repository is the storage engine: it turns a Backend of immutable
// objects into an encrypted, deduplicated store of blobs, index files and
// snapshots. Nothing it writes is ever rewritten: packs, index files and
// snapshots are new objects named by the SHA-256 of their bytes.
package repository

import (
	"bytes"
	"cmp"
	"context"
	"crypto/fips140"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/compress"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/index/diskidx"
)

// Errors callers test for with errors.Is.
var (
	ErrNoRepository      = errors.New("no repository")
	ErrAlreadyExists     = errors.New("repository already initialized")
	ErrWrongPassphrase   = crypto.ErrWrongPassphrase
	ErrLastKey           = errors.New("refusing to remove the last key slot: the repository would become unreadable")
	ErrBlobNotFound      = index.ErrNotIndexed
	ErrObjectCorrupted   = errors.New("object corrupted")
	configHandle         = backend.Handle{Type: backend.ConfigFile, Name: "config"}
	maxUnpackedObjectLen = int64(256 << 20)
)

// A named object holds a WAL segment, of up to 1 GiB (initdb
// --wal-segsize, pgmeta.MaxSegmentSize): more than other objects may.
// maxNamedSealedLen bounds what it takes stored, compressed in any way
// (zstd's bound is a little over the input) or raw, with its name, nonce
// and tag.
const (
	maxNamedPlainLen  = 1 << 30
	maxNamedSealedLen = maxNamedPlainLen + maxNamedPlainLen/64
)

// Repository is an open, unlocked repository. Its methods are safe for
// concurrent use.
type Repository struct {
	// namedBufs recycles the buffers large named objects are sealed in
	// (sealNamed).
	namedBufs bigBufs
	readBufs  readBufs
	be        backend.Backend
	key       *crypto.Key
	blobID    crypto.BlobIDFunc // the config's blob ID algorithm under key
	objects   id.Hasher         // the config's object ID algorithm
	keyID     string            // the slot that opened it
	cfg       Config
	codec     *compress.Codec // nil: compression off
	dec       *compress.Codec // decodes whatever the writer chose
	// fast compresses named objects (WAL segments): PostgreSQL waits on
	// each archive call, so latency beats the last few percent of ratio.
	fast   *compress.Codec
	idx    *index.Map
	log    *slog.Logger
	packer *packer
	// sealBufs are the buffers saveBlob seals into (blob.go).
	sealBufs sealBufs

	idxMu        sync.Mutex
	idxErrors    []IndexError // index objects that could not be read
	loadedIndex  map[id.ID]struct{}
	wroteIndex   map[id.ID]struct{}        // the index objects this writer flushed (see UnlistPacks)
	headerPacks  map[id.ID]index.PackBlobs // indexed from pack headers only, see HeaderPacks
	pendingIndex []index.PackBlobs
	pendingBlobs int             // in pendingIndex
	idxCache     *IndexCacheInfo // the index cache r.idx stands on; nil: none
	idxTable     *diskidx.Table  // its open file; nil: none

	// cacheRepair serializes repairs of the index cache's damaged
	// buckets (see repairIndexCache), which it counts in repairs.
	cacheRepair struct {
		sync.Mutex
		repaired map[uint64]bool
		passes   int
	}

	cacheDir string // Options.IndexCacheDir
	cacheMin int    // Options.IndexCacheMinBlobs

	onIndexGrowth atomic.Pointer[func(int)] // see OnIndexGrowth

	// candidates are the packs of prune's deletion-candidate records
	// this writer avoids (SetCandidatePacks); nil: none.
	candidates atomic.Pointer[map[id.ID]struct{}]

	// badCopies are the packs a blob could not be read from while another
	// pack's copy served, each warned about once (see DamagedCopies).
	badCopies sync.Map // id.ID -> DamagedCopy

	kdfOverride *crypto.KDFParams

	metaReads         int // Options.MetadataReads
	retentionRequests int // Options.RetentionRequests

	// Stats counts the blobs this process added.
	Stats SaveStats
}

// Options tune opening and creating a repository.
type Options struct {
	Logger *slog.Logger
	// UploadConcurrency bounds packs being written at once (default: what
	// the store asks for, backend.ConcurrencyOf).
	UploadConcurrency int
	// MetadataReads bounds the index objects and pack headers read at
	// once (default DefaultMetadataReads).
	MetadataReads int
	// RetentionRequests bounds the Object Lock retention requests in
	// flight (default DefaultRetentionRequests).
	RetentionRequests int
	// IndexCacheDir is the directory of local caches (one directory per
	// repository ID below it): LoadIndex keeps the index of a large
	// repository there in a file it reads from instead of in memory.
	// Empty: the index is always in memory.
	IndexCacheDir string
	// IndexCacheMinBlobs is the estimated blob count from which the index
	// cache is used (default DefaultIndexCacheMinBlobs).
	IndexCacheMinBlobs int
	// KDF overrides the key derivation parameters for new key slots (tests).
	KDF *crypto.KDFParams
	// KeySlot names the key slot to try first (from a key file).
	KeySlot string
	// OnlyKeySlot, an id or unique prefix, is the one key slot to try
	// (--key-slot): for a repository with more slots than one unlock tries.
	OnlyKeySlot string
	// unlockCost replaces maxUnlockCost when set (tests).
	unlockCost uint64
}

// DefaultMetadataReads is how many index objects and pack headers are
// read at once: small objects, whose reads are mostly waiting.
const DefaultMetadataReads = 8

// DefaultRetentionRequests is how many retention requests are in flight
// at once: each is a small round trip, so many in flight hide latency.
const DefaultRetentionRequests = 16

// InitOptions choose the parameters fixed at creation.
type InitOptions struct {
	Options
	Chunker     ChunkerSizes // zero: 512 KiB / 1 MiB / 8 MiB
	Compression string       // default "default" (zstd level 3, fast strategy on large blobs)
	PackSize    int          // default DefaultPackSize
	// BlobID is the blob ID algorithm: crypto.BlobIDBLAKE3 (the default)
	// or crypto.BlobIDHMACSHA256. Objects are named by the plain hash of
	// the same family: BLAKE3, or SHA-256 beside HMAC-SHA-256.
	BlobID string
	// FIPS makes a repository whose every primitive is FIPS 140-3
	// approved (fipsAlgorithms): AES-256-GCM-HKDF-SHA-256 seals, PBKDF2
	// passphrase slots, HMAC-SHA-256 blob IDs.
	FIPS       bool
	ObjectLock *ObjectLock
	KeyLabel   string
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Init creates a repository on be, which must not hold one yet.
func Init(ctx context.Context, be backend.Backend, passphrase []byte, o InitOptions) (*Repository, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("empty passphrase: set NESTGUARD_PASSWORD or use --password-file")
	}
	if _, err := be.Stat(ctx, configHandle); err == nil {
		return nil, fmt.Errorf("%w at %s", ErrAlreadyExists, be.Location())
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checking %s for an existing repository: %w", be.Location(), err)
	}
	cfg := Config{
		Version:     FormatVersion,
		ID:          randomHex(16),
		Created:     time.Now().UTC(),
		Algorithms:  defaultAlgorithms(),
		Chunker:     o.Chunker,
		Compression: o.Compression,
		PackSize:    o.PackSize,
		ObjectLock:  o.ObjectLock,
	}
	if cfg.Chunker == (ChunkerSizes{}) {
		cfg.Chunker = ChunkerSizes{Min: 512 << 10, Avg: 1 << 20, Max: 8 << 20}
	}
	if cfg.Compression == "" {
		cfg.Compression = "default"
	}
	if cfg.PackSize == 0 {
		cfg.PackSize = DefaultPackSize
	}
	if o.FIPS {
		cfg.Algorithms = fipsAlgorithms()
	} else if fips140.Enforced() {
		return nil, fmt.Errorf("this process runs with GODEBUG=fips140=only, where only a FIPS repository can be used: create it with --fips (or run without fips140=only): %w", crypto.ErrNotApproved)
	}
	if o.BlobID != "" {
		cfg.Algorithms.BlobID = o.BlobID
		if o.BlobID == crypto.BlobIDHMACSHA256 {
			cfg.Algorithms.ObjectID = id.SHA256
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	lock, err := checkObjectLock(ctx, be, cfg.ObjectLock)
	if err != nil {
		return nil, err
	}
	cfg.ObjectLock = lock
	key, err := crypto.NewKeyFor(cfg.Algorithms.Encryption)
	if err != nil {
		return nil, err
	}
	r, err := initRepository(ctx, be, key, cfg, passphrase, o)
	if err != nil {
		key.Close()
		return nil, err
	}
	return r, nil
}

// initRepository writes the first key slot and the config of a new
// repository with master key key.
func initRepository(ctx context.Context, be backend.Backend, key *crypto.Key, cfg Config, passphrase []byte, o InitOptions) (*Repository, error) {
	r, err := newRepository(be, key, cfg, o.Options)
	if err != nil {
		return nil, err
	}
	// The key slot is written before the config: a crash in between leaves
	// no config, so init can simply be run again.
	if r.keyID, err = r.AddKey(ctx, passphrase, o.KeyLabel); err != nil {
		return nil, err
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	sealed, err := key.Seal(nil, cfgJSON, adConfig())
	if err != nil {
		return nil, err
	}
	if err := be.Save(ctx, configHandle, bytes.NewReader(sealed), int64(len(sealed))); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w at %s (created concurrently)", ErrAlreadyExists, be.Location())
		}
		return nil, fmt.Errorf("writing repository config: %w", err)
	}
	return r, nil
}

// Open unlocks the repository on be with passphrase and loads its config.
// Call LoadIndex before reading or writing blobs.
func Open(ctx context.Context, be backend.Backend, passphrase []byte, o Options) (*Repository, error) {
	sealedCfg, err := backend.ReadAll(ctx, be, configHandle, 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: create one with 'nestguard init'", ErrNoRepository, be.Location())
	}
	if err != nil {
		return nil, fmt.Errorf("reading repository config: %w", err)
	}
	var cfg Config
	// A slot counts only if its key opens this repository's config and
	// the slot names this repository: a slot copied from another
	// repository with the same passphrase is passed over.
	openConfig := func(key *crypto.Key, s *crypto.Slot) error {
		plain, err := key.Open(nil, sealedCfg, adConfig())
		if err != nil {
			return fmt.Errorf("%w: its key does not open the repository config, so the config object is damaged or the slot belongs to another repository", err)
		}
		var c Config
		if err := json.Unmarshal(plain, &c); err != nil {
			return fmt.Errorf("repository config: %w", err)
		}
		if c.ID != s.Repository {
			return fmt.Errorf("the slot belongs to repository %q, not to this one (%q)", s.Repository, c.ID)
		}
		cfg = c
		return nil
	}
	key, keyID, err := unlock(ctx, be, passphrase, unlockOptions{hint: o.KeySlot, only: o.OnlyKeySlot,
		budget: cmp.Or(o.unlockCost, maxUnlockCost), log: o.logger(), accept: openConfig})
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		key.Close()
		return nil, err
	}
	if cfg.Algorithms.Encryption != key.Suite() {
		return nil, fmt.Errorf("repository config: it names encryption %s, but key slot %s holds a %s key", cfg.Algorithms.Encryption, shortSlot(keyID), key.Suite())
	}
	r, err := newRepository(be, key, cfg, o)
	if err != nil {
		key.Close()
		return nil, err
	}
	r.keyID = keyID
	r.followBucketDefault(ctx)
	return r, nil
}

func newRepository(be backend.Backend, key *crypto.Key, cfg Config, o Options) (*Repository, error) {
	codec, _ := codecFor(cfg.Compression) // validated by the caller
	blobID, err := key.BlobIDFunc(cfg.Algorithms.BlobID)
	if err != nil {
		return nil, fmt.Errorf("repository config: %w", err)
	}
	objects, err := id.NewHasher(cfg.Algorithms.ObjectID)
	if err != nil {
		return nil, fmt.Errorf("repository config: %w", err)
	}
	uploads := o.UploadConcurrency
	if uploads <= 0 {
		uploads, _ = backend.ConcurrencyOf(be)
	}
	r := &Repository{
		be:          be,
		key:         key,
		blobID:      blobID,
		objects:     objects,
		cfg:         cfg,
		codec:       codec,
		dec:         codec,
		idx:         index.NewMap(),
		log:         o.logger(),
		loadedIndex: make(map[id.ID]struct{}),
		wroteIndex:  make(map[id.ID]struct{}),
		headerPacks: make(map[id.ID]index.PackBlobs),
		sealBufs:    newSealBufs(),
	}
	if r.dec == nil {
		r.dec = compress.NewCodec(compress.Fastest)
	}
	if codec != nil {
		r.fast = r.dec
		if cfg.Compression != "fastest" {
			r.fast = compress.NewCodec(compress.Fastest)
		}
	}
	r.kdfOverride = o.KDF
	r.cacheDir = o.IndexCacheDir
	r.cacheMin = cmp.Or(max(o.IndexCacheMinBlobs, 0), DefaultIndexCacheMinBlobs)
	r.metaReads = cmp.Or(max(o.MetadataReads, 0), DefaultMetadataReads)
	r.retentionRequests = cmp.Or(max(o.RetentionRequests, 0), DefaultRetentionRequests)
	r.packer = newPacker(r, uploads)
	r.applyDefaultRetention()
	return r, nil
}

// Config returns the repository configuration.
func (r *Repository) Config() Config { return r.cfg }

// ObjectID returns the name the repository gives an object of these
// bytes: their SHA-256 or BLAKE3, as its config says. Anyone can check it
// without the key.
func (r *Repository) ObjectID(b []byte) id.ID { return r.objects.Sum(b) }

// Key returns the master key (for chunker seeding and verification).
func (r *Repository) Key() *crypto.Key { return r.key }

// Backend returns the storage backend.
func (r *Repository) Backend() backend.Backend { return r.be }

// openFailed describes a failure to open what: the object is corrupted,
// unless the repository was closed (crypto.ErrClosed), which says nothing
// about the object.
func openFailed(what string, err error) error {
	if errors.Is(err, crypto.ErrClosed) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %v", what, ErrObjectCorrupted, err)
}

// Close waits for the packs being uploaded, removes the packs left open
// (a writer that failed, whose blobs nothing references), zeroes the
// repository's keys (crypto.Key.Close: what is and is not zeroed is in
// docs/security.md) and closes its backend. Every command
// closes the repositories it opened, on failure too. The Repository must
// not be used afterwards: sealing and opening fail with crypto.ErrClosed.
// Closing twice is harmless.
func (r *Repository) Close() error {
	if r.packer != nil {
		r.packer.discard()
	}
	r.namedBufs.release()
	r.readBufs.release()
	r.sealBufs.release()
	r.key.Close()
	return r.be.Close()
}

// Index returns the in-memory blob index.
func (r *Repository) Index() *index.Map { return r.idx }

// OnIndexGrowth sets fn to be called with the index's size
// (Index().MemoryBytes()) each time the blobs of a pack this repository
// stored have entered it, from the goroutine that stored the pack; nil
// stops the calls. A writer's index grows by 52 bytes a new blob, so a
// first backup of a million small files ends with an index several times
// the size it opened with: the caller's memory limit follows it.
func (r *Repository) OnIndexGrowth(fn func(indexBytes int)) {
	if fn == nil {
		r.onIndexGrowth.Store(nil)
		return
	}
	r.onIndexGrowth.Store(&fn)
}

// Location names the repository for messages.
func (r *Repository) Location() string { return r.be.Location() }

// Workers is the number of goroutines CPU-bound stages use.
func Workers() int { return max(2, runtime.GOMAXPROCS(0)) }

// SaveObject stores v as JSON in a new sealed object of type t and returns
// its ID (the object ID of the stored bytes, see ObjectID).
func (r *Repository) SaveObject(ctx context.Context, t backend.FileType, v any) (id.ID, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return id.ID{}, fmt.Errorf("encoding %s object: %w", t, err)
	}
	return r.saveSealed(ctx, t, plain)
}

func (r *Repository) saveSealed(ctx context.Context, t backend.FileType, plain []byte) (id.ID, error) {
	sealed, err := r.key.Seal(nil, packBody(r.codec, nil, plain), adObject(t))
	if err != nil {
		return id.ID{}, fmt.Errorf("sealing %s object: %w", t, err)
	}
	oid := r.objects.Sum(sealed)
	h := backend.Handle{Type: t, Name: oid.String()}
	err = r.be.Save(ctx, h, bytes.NewReader(sealed), int64(len(sealed)))
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return id.ID{}, fmt.Errorf("saving %s: %w", h, err)
	}
	return oid, nil
}

// LoadObject reads object t/oid, checks its hash, decrypts it and decodes
// the JSON into v.
func (r *Repository) LoadObject(ctx context.Context, t backend.FileType, oid id.ID, v any) error {
	plain, err := r.loadSealed(ctx, t, oid)
	if err != nil {
		return err
	}
	return decodeObject(t, oid, plain, v)
}

// decodeObject decodes the JSON plaintext of object t/oid into v.
func decodeObject(t backend.FileType, oid id.ID, plain []byte, v any) error {
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("%s/%s: %w: %v", t, oid, ErrObjectCorrupted, err)
	}
	return nil
}

func (r *Repository) loadSealed(ctx context.Context, t backend.FileType, oid id.ID) ([]byte, error) {
	sealed, err := r.readSealed(ctx, t, oid)
	if err != nil {
		return nil, err
	}
	return r.openSealed(t, oid, sealed)
}

// readSealed reads object t/oid from the storage and checks that its
// bytes hash to its name.
func (r *Repository) readSealed(ctx context.Context, t backend.FileType, oid id.ID) ([]byte, error) {
	h := backend.Handle{Type: t, Name: oid.String()}
	sealed, err := backend.ReadAll(ctx, r.be, h, maxUnpackedObjectLen)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", h, err)
	}
	if r.objects.Sum(sealed) != oid {
		return nil, fmt.Errorf("%s: %w: content does not match its name", h, ErrObjectCorrupted)
	}
	return sealed, nil
}

// openSealed authenticates, decrypts and unpacks the stored bytes of
// object t/oid, whose hash was checked.
func (r *Repository) openSealed(t backend.FileType, oid id.ID, sealed []byte) ([]byte, error) {
	h := backend.Handle{Type: t, Name: oid.String()}
	body, err := r.key.Open(nil, sealed, adObject(t))
	if err != nil {
		return nil, openFailed(h.String(), err)
	}
	plain, err := r.unpackBody(nil, body, int(maxUnpackedObjectLen))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h, err)
	}
	return plain, nil
}

// ListObjects returns the IDs of all objects of type t.
func (r *Repository) ListObjects(ctx context.Context, t backend.FileType) ([]id.ID, error) {
	var ids []id.ID
	err := r.be.List(ctx, t, func(fi backend.FileInfo) error {
		oid, err := id.Parse(fi.Name)
		if err != nil {
			r.log.Warn("ignoring foreign object", "type", t, "name", fi.Name)
			return nil
		}
		ids = append(ids, oid)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", t, err)
	}
	return ids, nil
}

// Blob body flags: the first plaintext byte of every sealed blob or object.
const (
	flagRaw  = 0
	flagZstd = 1
)

func (r *Repository) unpackBody(dst, body []byte, maxLen int) ([]byte, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrObjectCorrupted)
	}
	switch body[0] {
	case flagRaw:
		return body[1:], nil
	case flagZstd:
		return r.dec.Decompress(dst, body[1:], maxLen)
	}
	return nil, fmt.Errorf("%w: unknown body flag %d", ErrObjectCorrupted, body[0])
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// KeyID is the key slot that unlocked the repository.
func (r *Repository) KeyID() string { return r.keyID }

// AuditKey returns the key of the repository's audit trail (see
// crypto.Key.AuditKey); the caller closes it.
func (r *Repository) AuditKey() (*crypto.Key, error) { return r.key.AuditKey() }
