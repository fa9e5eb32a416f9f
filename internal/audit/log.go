package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/crypto"
)

// keyName of the object holding a log's sealed signing key.
const signingKeyObject = "key"

// Log is one repository's audit log, opened for appending and reading
// with the audit key (crypto.Key.AuditKey).
type Log struct {
	be  backend.Backend
	key *crypto.Key
	id  string

	signer   note.Signer
	verifier note.Verifier
}

// New returns the log logID (the repository's id) on be, sealed under
// key. It reads nothing yet.
func New(be backend.Backend, key *crypto.Key, logID string) *Log {
	return &Log{be: be, key: key, id: logID}
}

// ID is the log's id.
func (l *Log) ID() string { return l.id }

// ErrSigningKeyMissing is the error (wrapped) of a log whose signing key
// is gone from the storage while entries signed with it are there.
var ErrSigningKeyMissing = errors.New("audit signing key missing")

// StoredVerifier returns the log's verifier key as Verifier does, but
// creates nothing: "" when the repository has no audit signing key and no
// audit log yet; an error wrapping ErrSigningKeyMissing when the log has
// entries but the key is gone.
func (l *Log) StoredVerifier(ctx context.Context) (string, error) {
	h := backend.Handle{Type: backend.AuditFile, Name: signingKeyObject}
	_, err := l.be.Stat(ctx, h)
	if errors.Is(err, fs.ErrNotExist) {
		return "", l.keyDeleted(ctx, h)
	}
	if err != nil {
		return "", fmt.Errorf("audit signing key: %w", err)
	}
	return l.Verifier(ctx)
}

// KeyName is the name of log logID's signing key, the first part of its
// verifier key and of its signature lines.
func KeyName(logID string) string { return keyName(logID) }

// Verifier returns the log's verifier key (the public half of its signing
// key) in note's text form, "nestguard-audit-<id>+<hash>+<key>", creating
// the signing key if the repository has none yet.
func (l *Log) Verifier(ctx context.Context) (string, error) {
	if err := l.loadKey(ctx); err != nil {
		return "", err
	}
	return l.verifier.(*textVerifier).text, nil
}

// textVerifier is a verifier with its key's text form (note keeps none).
type textVerifier struct {
	note.Verifier
	text string
}

// verifierText derives the verifier key text from a signing key's text,
// "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || Ed25519 seed)>".
func verifierText(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a signing key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	defer clear(raw)
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 signing key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return parts[2] + "+" + parts[3] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, pub...)), nil
}

// keyDeleted is called when the signing key h is not stored: it returns
// an error wrapping ErrSigningKeyMissing if the log has entries (the key
// was deleted), nil if it has none (no key yet).
func (l *Log) keyDeleted(ctx context.Context, h backend.Handle) error {
	starts, err := entryStarts(ctx, l.be, l.id)
	if err != nil {
		return err
	}
	if len(starts) == 0 {
		return nil
	}
	return &keyMissingError{h, len(starts)}
}

// keyMissingError is ErrSigningKeyMissing with what was found.
type keyMissingError struct {
	h       backend.Handle
	entries int
}

func (e *keyMissingError) Error() string {
	return fmt.Sprintf("the audit signing key %s is missing, but the audit log has %d entries: it was deleted. Restore it from a copy of the storage ('audit verify --key' with the verifier key the auditor holds still checks the log); nothing is appended under a new key, since the log would no longer verify with that key", e.h, e.entries)
}

func (e *keyMissingError) Is(target error) bool { return target == ErrSigningKeyMissing }

// damagedKey is the error of a signing key h that is stored but cannot
// be used: damaged or replaced. What to do is the same as for a deleted
// one (keyMissingError).
func damagedKey(h backend.Handle, err error) error {
	return fmt.Errorf("the audit signing key %s is damaged: %w. Restore %s from a copy of the storage ('audit verify --key' with the verifier key the auditor holds still checks the log); nothing is appended meanwhile, and a new key is never made, since the log would no longer verify with it", h, err, h)
}

// loadKey reads the log's signing key, creating it on first use. Two
// writers creating it at once both end up with the one stored first: the
// object is write-once, and the loser reads the winner's.
func (l *Log) loadKey(ctx context.Context) error {
	if l.signer != nil {
		return nil
	}
	h := backend.Handle{Type: backend.AuditFile, Name: signingKeyObject}
	sealed, err := backend.ReadAll(ctx, l.be, h, 1<<16)
	if errors.Is(err, fs.ErrNotExist) {
		// A log without its key: never start a second key, under which
		// the entries before would no longer verify.
		if err := l.keyDeleted(ctx, h); err != nil {
			return err
		}
		skey, _, gerr := note.GenerateKey(rand.Reader, keyName(l.id))
		if gerr != nil {
			return fmt.Errorf("generating the audit signing key: %w", gerr)
		}
		sealed, err = l.key.Seal(nil, []byte(skey), adSigningKey(l.id))
		if err != nil {
			return fmt.Errorf("sealing the audit signing key: %w", err)
		}
		err = l.be.Save(ctx, h, bytes.NewReader(sealed), int64(len(sealed)))
		if errors.Is(err, fs.ErrExist) {
			sealed, err = backend.ReadAll(ctx, l.be, h, 1<<16)
		}
	}
	if err != nil {
		return fmt.Errorf("audit signing key %s: %w", h, err)
	}
	skey, err := l.key.Open(nil, sealed, adSigningKey(l.id))
	if err != nil {
		return damagedKey(h, fmt.Errorf("it does not open with this repository's key: %w", err))
	}
	defer clear(skey)
	signer, err := note.NewSigner(string(skey))
	if err != nil {
		return damagedKey(h, err)
	}
	vtext, err := verifierText(string(skey))
	if err != nil {
		return damagedKey(h, err)
	}
	v, err := note.NewVerifier(vtext)
	if err != nil {
		return fmt.Errorf("audit signing key %s: %w", h, err)
	}
	l.signer, l.verifier = signer, &textVerifier{Verifier: v, text: vtext}
	return nil
}

// maxAppendTries bounds how often Append retries after another writer
// took the position it tried.
const maxAppendTries = 100

// Append adds recs to the log as one entry and returns the new signed
// checkpoint. Writers need no lock: each entry is stored under its first
// leaf's position, and the store's write-once Save (create if absent:
// link(2) on a directory, If-None-Match on S3) lets exactly one writer
// have each position; a writer that loses reads the new head and tries
// the next position. So the log never forks.
func (l *Log) Append(ctx context.Context, recs ...*Record) (*Checkpoint, error) {
	if len(recs) == 0 || len(recs) > maxEntryRecords {
		return nil, fmt.Errorf("audit: %d records in one append", len(recs))
	}
	if err := l.loadKey(ctx); err != nil {
		return nil, err
	}
	sealed := make([][]byte, len(recs))
	leaves := make([][]byte, len(recs))
	for i, r := range recs {
		var err error
		if sealed[i], err = sealRecord(l.key, l.id, r); err != nil {
			return nil, err
		}
		leaves[i] = leafHash(sealed[i])
	}
	for try := 0; ; try++ {
		head, err := l.head(ctx)
		if err != nil {
			return nil, err
		}
		e, cp, err := l.next(head, sealed, leaves)
		if err != nil {
			return nil, err
		}
		b := e.encode()
		h := backend.Handle{Type: backend.AuditFile, Name: entryName(l.id, e.start)}
		err = l.be.Save(ctx, h, bytes.NewReader(b), int64(len(b)))
		if err == nil {
			return cp, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("saving audit log entry %s: %w", h, err)
		}
		// A retried Save whose first attempt landed reports the object
		// as existing: then it is ours.
		if got, rerr := backend.ReadAll(ctx, l.be, h, maxEntryLen); rerr == nil && bytes.Equal(got, b) {
			return cp, nil
		}
		if try == maxAppendTries {
			return nil, fmt.Errorf("audit: another writer took position %d of the log %d times in a row", e.start, maxAppendTries)
		}
		if err := backoff(ctx, try); err != nil {
			return nil, err
		}
	}
}

func backoff(ctx context.Context, try int) error {
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(5+5*min(try, 20))))
	t := time.NewTimer(time.Duration(n.Int64()+1) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// next builds the entry that appends sealed (with leaf hashes leaves)
// after head (nil: the log is empty), and its signed checkpoint.
func (l *Log) next(head *entry, sealed, leaves [][]byte) (*entry, *Checkpoint, error) {
	var start uint64
	var frontier [][]byte
	if head != nil {
		start, frontier = head.size(), head.frontier
	}
	rng, err := rangeFactory.NewRange(0, start, frontier)
	if err != nil {
		return nil, nil, fmt.Errorf("audit log head: %w", err)
	}
	for _, lh := range leaves {
		if err := rng.Append(lh, nil); err != nil {
			return nil, nil, err
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, nil, err
	}
	size := start + uint64(len(leaves))
	msg, err := note.Sign(&note.Note{Text: checkpointText(l.id, size, root)}, l.signer)
	if err != nil {
		return nil, nil, fmt.Errorf("signing audit checkpoint: %w", err)
	}
	e := &entry{logID: l.id, start: start, records: sealed, frontier: rng.Hashes(), note: msg}
	return e, &Checkpoint{Origin: origin(l.id), Size: size, Root: root, Note: msg}, nil
}

// head reads the log's newest entry and checks it: its checkpoint is
// signed by the log's key, and its frontier gives the root it signs. A
// writer never builds on a head it cannot check (nil: the log is empty).
func (l *Log) head(ctx context.Context) (*entry, error) {
	return readHead(ctx, l.be, l.id, l.verifier)
}

// Newest returns the newest checkpoint of log logID on be, checked with
// v as a writer checks it (its signature, and that its compact range gives
// its root); nil when the log is empty. It needs no passphrase.
func Newest(ctx context.Context, be backend.Backend, logID string, v note.Verifier) (*Checkpoint, error) {
	head, err := readHead(ctx, be, logID, v)
	if err != nil || head == nil {
		return nil, err
	}
	return OpenCheckpoint(head.note, v)
}

func readHead(ctx context.Context, be backend.Backend, logID string, v note.Verifier) (*entry, error) {
	starts, err := entryStarts(ctx, be, logID)
	if err != nil {
		return nil, err
	}
	if len(starts) == 0 {
		return nil, nil
	}
	last := starts[len(starts)-1]
	h := backend.Handle{Type: backend.AuditFile, Name: entryName(logID, last)}
	b, err := backend.ReadAll(ctx, be, h, maxEntryLen)
	if err != nil {
		return nil, fmt.Errorf("reading audit log head %s: %w", h, err)
	}
	e, err := checkEntry(h, b, logID, last, v)
	if err != nil {
		return nil, fmt.Errorf("the audit log's newest entry does not verify, so nothing is appended to it (run 'nestguard audit verify'): %w", err)
	}
	rng, err := rangeFactory.NewRange(0, e.size(), e.frontier)
	if err != nil {
		return nil, fmt.Errorf("audit log head %s: %w", h, err)
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	cp, _ := OpenCheckpoint(e.note, v) // checked by checkEntry
	if !bytes.Equal(root, cp.Root) {
		return nil, fmt.Errorf("the audit log's newest entry %s: its frontier does not give its signed root (run 'nestguard audit verify')", h)
	}
	return e, nil
}

// checkEntry decodes the entry stored as h (expected at start of log
// logID) and checks its checkpoint's signature with v (nil: not checked)
// and that it names the entry's tree size.
func checkEntry(h backend.Handle, b []byte, logID string, start uint64, v note.Verifier) (*entry, error) {
	e, _, err := checkEntryCheckpoint(h, b, logID, start, v)
	return e, err
}

// checkEntryCheckpoint is checkEntry, also returning the entry's
// checkpoint (whose Note is part of b).
func checkEntryCheckpoint(h backend.Handle, b []byte, logID string, start uint64, v note.Verifier) (*entry, *Checkpoint, error) {
	e, err := decodeEntryAt(h, b, logID, start)
	if err != nil {
		return nil, nil, err
	}
	cp, err := entryCheckpoint(h, e, logID, v)
	if err != nil {
		return nil, nil, err
	}
	return e, cp, nil
}

// decodeEntryAt decodes the entry stored as h, which must say it is the
// entry of log logID at start: one copied under another name is damaged
// (its records would open, records being bound to the log, not to a
// position). It is all Read checks of an entry.
func decodeEntryAt(h backend.Handle, b []byte, logID string, start uint64) (*entry, error) {
	e, err := decodeEntry(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h, err)
	}
	if e.logID != logID || e.start != start {
		return nil, fmt.Errorf("%s: the entry says it is log %q position %d (renamed or copied)", h, e.logID, e.start)
	}
	return e, nil
}

// entryCheckpoint parses the checkpoint of e (stored as h), checking its
// signature with v (nil: not checked) and that it names e's tree size.
func entryCheckpoint(h backend.Handle, e *entry, logID string, v note.Verifier) (*Checkpoint, error) {
	var cp *Checkpoint
	var err error
	if v != nil {
		cp, err = OpenCheckpoint(e.note, v)
	} else {
		cp, err = ParseUnverified(e.note)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h, err)
	}
	if cp.Origin != origin(logID) || cp.Size != e.size() {
		return nil, fmt.Errorf("%s: its checkpoint is of %q size %d, not of this entry (size %d)", h, cp.Origin, cp.Size, e.size())
	}
	return cp, nil
}

// entryStarts lists the positions of log logID's entries, sorted.
func entryStarts(ctx context.Context, be backend.Backend, logID string) ([]uint64, error) {
	var starts []uint64
	err := backend.ListNames(ctx, be, backend.AuditFile, func(name string) error {
		if id, start, ok := parseEntryName(name); ok && id == logID {
			starts = append(starts, start)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the audit log: %w", err)
	}
	slices.Sort(starts)
	return starts, nil
}

// LogIDs lists the logs whose entries are stored on be: the repository's
// own, and those copies brought from other repositories.
func LogIDs(ctx context.Context, be backend.Backend) ([]string, error) {
	seen := make(map[string]bool)
	err := backend.ListNames(ctx, be, backend.AuditFile, func(name string) error {
		if id, _, ok := parseEntryName(name); ok {
			seen[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the audit log: %w", err)
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// Checkpoint returns the log's newest checkpoint, checked as Append checks
// the head; nil when the log is empty.
func (l *Log) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	if err := l.loadKey(ctx); err != nil {
		return nil, err
	}
	head, err := l.head(ctx)
	if err != nil || head == nil {
		return nil, err
	}
	return OpenCheckpoint(head.note, l.verifier)
}

// Read calls fn with every record of the log in order, with its position;
// a record that does not open is passed as err (and r nil), and so is an
// entry that does not decode as the log's entry at its position (once,
// at its first position). An error from fn stops the reading and is
// returned, as is a failure to read an entry (missing since the log was
// listed, or larger than an entry can be). Read checks no signature and
// no tree: that is Verify's work.
//
// The entries are read as Verify reads them (readEntries: batches read
// ahead in parallel, records opened on the reading goroutines); fn is
// called in log order, one call at a time, but not on the caller's
// goroutine.
func (l *Log) Read(ctx context.Context, fn func(pos uint64, r *Record, err error) error) error {
	starts, err := entryStarts(ctx, l.be, l.id)
	if err != nil {
		return err
	}
	return readEntries(ctx, l.be, l.id, starts, readOptions{key: l.key, decodeOnly: true}, func(starts []uint64, res []checked) error {
		for j := range res {
			if err := res[j].pass(starts[j], fn); err != nil {
				return err
			}
		}
		return nil
	})
}
