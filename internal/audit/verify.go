package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/crypto"
)

// VerifyOptions say what Verify checks a log against.
type VerifyOptions struct {
	// Verifier is the log's verifier key (required): every checkpoint
	// must be signed by it.
	Verifier note.Verifier
	// Exported are checkpoints exported earlier ('audit checkpoint'):
	// each must be one the log passed through (its root equals the root
	// of the log's first Size records).
	Exported []*Checkpoint
	// Workers read and check entries at once (default: DefaultWorkers,
	// or GOMAXPROCS if more; see readEntries).
	Workers int
	// AllSignatures checks the signature of every entry's checkpoint, not
	// only the newest's (see Verify).
	AllSignatures bool
	// From, a checkpoint this auditor verified before (signature checked
	// by the caller), makes the verification incremental: the records it
	// covers are taken as verified then, and only the entries after it
	// are read; the entry it ends with must still give its root.
	From *Checkpoint
}

// Report is what Verify found.
type Report struct {
	LogID   string
	Entries int
	Records uint64
	// Newest is the log's newest checkpoint, nil for an empty log.
	Newest *Checkpoint
	// Resumed is the size of the checkpoint an incremental verification
	// started from (VerifyOptions.From): the records before it were not
	// read.
	Resumed uint64
	// Problems are every failed check, in log order (at most
	// maxProblems, then a count).
	Problems []string
}

// OK reports whether no check failed.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

const maxProblems = 100

func (r *Report) problem(format string, args ...any) {
	switch {
	case len(r.Problems) < maxProblems:
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	case len(r.Problems) == maxProblems:
		r.Problems = append(r.Problems, "more problems not listed")
	}
}

// Verify checks log logID on be with only the verifier key and the stored
// objects (no passphrase): the entries follow each other with no gap or
// overlap, every entry's checkpoint root is the root of the tree of every
// record up to it (so each checkpoint is consistent with the one before,
// and every record is included in the newest), the newest checkpoint is
// signed by the audit key, and each exported checkpoint is one the log
// passed through; one ahead of the log is a rollback. A problem found is
// reported in the Report, not as err; err is a failure to read.
//
// The newest signature binds every record before it: a record added,
// changed, removed or reordered anywhere changes the newest root, which
// then does not match what was signed, and a writer never appends after
// a newest entry whose signature does not verify. So the signatures of
// older entries add nothing to that, and checking them (AllSignatures)
// costs an Ed25519 verification per entry (about 100 µs here, most of
// the time of a log of single-record entries).
func Verify(ctx context.Context, be backend.Backend, logID string, o VerifyOptions) (*Report, error) {
	return verify(ctx, be, logID, o, nil, nil)
}

// VerifyRead is Verify and Read in one pass over the log, for a reader
// that needs both (a compliance report): the log is listed once and each
// entry read once, checked as Verify checks it and its records opened as
// Read opens them. fn is called as Read calls it, whatever the checks
// find: every record in log order, one that does not open as its error,
// an entry that does not decode as one error; not on the caller's
// goroutine. The Report is Verify's. When it is OK and the log is not
// empty, tree is the tree of its newest checkpoint (rep.Newest), as
// ReadTree returns it; else nil, and nothing the records say can be
// proved. o.From is refused: the tree needs every record.
func (l *Log) VerifyRead(ctx context.Context, o VerifyOptions, fn func(pos uint64, r *Record, err error) error) (rep *Report, tree *Tree, err error) {
	if o.From != nil {
		return nil, nil, fmt.Errorf("audit: reading the log and its tree needs a full verification, not one from a checkpoint")
	}
	var leaves [][]byte
	rep, err = verify(ctx, l.be, l.id, o, l.key, func(start uint64, c *checked) error {
		if c.err == nil {
			for i := range c.records() {
				leaves = append(leaves, c.leaf(i))
			}
		}
		return c.pass(start, fn)
	})
	if err != nil || !rep.OK() || rep.Newest == nil {
		return rep, nil, err
	}
	if tree, err = NewTree(rep.Newest, leaves); err != nil {
		// Not expected of a log that verified: its records give the
		// newest root.
		rep.problem("%v", err)
		return rep, nil, nil
	}
	return rep, tree, nil
}

// verify is Verify, with key opening the records of every entry read
// (readOptions.key) and each, if set, called with every entry read, in
// log order; an error from each stops the verification and is returned.
func verify(ctx context.Context, be backend.Backend, logID string, o VerifyOptions, key *crypto.Key, each func(start uint64, c *checked) error) (*Report, error) {
	if o.Verifier == nil {
		return nil, fmt.Errorf("audit verify: no verifier key")
	}
	rep := &Report{LogID: logID}
	for _, x := range o.Exported {
		if x.Origin != origin(logID) {
			return nil, fmt.Errorf("exported checkpoint is of %q, not of log %s", x.Origin, logID)
		}
	}
	starts, err := entryStarts(ctx, be, logID)
	if err != nil {
		return nil, err
	}
	rng := rangeFactory.NewEmptyRange(0)
	// pending exported checkpoints, by size.
	exported := make(map[uint64][]*Checkpoint)
	for _, x := range o.Exported {
		exported[x.Size] = append(exported[x.Size], x)
	}
	if o.From != nil && o.From.Size > 0 {
		// Exported checkpoints before the one resumed from are checked
		// against the entries ending at them, as it is.
		for size, xs := range exported {
			if size >= o.From.Size {
				continue
			}
			delete(exported, size)
			_, root, problem, err := rangeAt(ctx, be, logID, starts, size)
			if err != nil {
				return nil, err
			}
			for _, x := range xs {
				if problem == "" && !bytes.Equal(root, x.Root) {
					problem = fmt.Sprintf("the entry ending at %d gives root %x", size, root)
				}
				if problem != "" {
					rep.problem("the exported checkpoint of size %d (root %x) is not one the log passed through: %s: the log was rewritten", size, x.Root, problem)
				}
			}
		}
		if rng, starts, err = resume(ctx, be, logID, starts, o.From, rep); err != nil || rng == nil {
			return rep, err
		}
		rep.Newest = o.From
	}
	checkExported := func() error {
		if len(exported) == 0 {
			return nil
		}
		xs := exported[rng.End()]
		if len(xs) == 0 {
			return nil
		}
		if rng.Begin() != 0 {
			// After a gap (reported) there is no root to compare.
			for _, x := range xs {
				rep.problem("the exported checkpoint of size %d cannot be checked: records before it are missing", x.Size)
			}
			delete(exported, rng.End())
			return nil
		}
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return err
		}
		for _, x := range xs {
			if !bytes.Equal(root, x.Root) {
				rep.problem("the exported checkpoint of size %d has root %x, but the log's first %d records have root %x: the log was rewritten (records before it deleted, modified or reordered)", x.Size, x.Root, x.Size, root)
			}
		}
		delete(exported, rng.End())
		return nil
	}
	if err := checkExported(); err != nil {
		return nil, err
	}
	// entryAt reads and checks the entry at start again, for the rare
	// paths that need more of it than the parallel pass keeps.
	entryAt := func(start uint64) (*entry, *Checkpoint, error) {
		h := backend.Handle{Type: backend.AuditFile, Name: entryName(logID, start)}
		b, err := backend.ReadAll(ctx, be, h, maxEntryLen)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", h, err)
		}
		return checkEntryCheckpoint(h, b, logID, start, nil)
	}
	damaged := false // the entry before did not decode or check
	// The newest entry that checked, and its checkpoint if it is the
	// log's last (the others' are read again at the end).
	newest, haveNewest := uint64(0), false
	var newestCP *Checkpoint
	ro := readOptions{workers: o.Workers, verifier: o.Verifier, allSignatures: o.AllSignatures, key: key}
	err = readEntries(ctx, be, logID, starts, ro, func(batch []uint64, res []checked) error {
		for j := range res {
			c := &res[j]
			start := batch[j]
			if each != nil {
				if err := each(start, c); err != nil {
					return err
				}
			}
			if c.err != nil {
				rep.problem("%v", c.err)
				damaged = true
				continue
			}
			rep.Entries++
			afterDamaged := damaged
			damaged = false
			newest, haveNewest, newestCP = start, true, c.cp
			if start != rng.End() {
				name := string(backend.AuditFile) + "/" + entryName(logID, start)
				switch {
				case start > rng.End() && afterDamaged:
					rep.problem("%s: records %d to %d are not readable (in the damaged entry above, or deleted)", name, rng.End(), start-1)
				case start > rng.End():
					rep.problem("%s: records %d to %d are missing (an entry was deleted)", name, rng.End(), start-1)
				default:
					rep.problem("%s: starts at %d, inside the previous entry (which ends at %d)", name, start, rng.End())
				}
				end := start + uint64(c.records())
				// Go on from the compact range this entry stores (its
				// records cannot be chained to those before), so that
				// the entries after it are checked against it rather
				// than each reported. Exported checkpoints inside it
				// cannot be checked.
				for size, xs := range exported {
					if size < end {
						for range xs {
							rep.problem("the exported checkpoint of size %d cannot be checked: records before it are missing", size)
						}
						delete(exported, size)
					}
				}
				var frontier [][]byte
				e, _, err := entryAt(start)
				switch {
				case err != nil:
					rep.problem("%v (it changed while being verified)", err)
				case e.size() != end:
					rep.problem("%s: changed while being verified: it now ends at %d, not at %d", name, e.size(), end)
				default:
					frontier = e.frontier
				}
				rng, err = rangeFactory.NewRange(0, end, frontier)
				if err != nil {
					rng = rangeFactory.NewEmptyRange(end)
				}
				if err := checkExported(); err != nil {
					return err
				}
				if rng.Begin() == 0 && rootOf(rng.Hashes()) != c.root {
					rep.problem("%s: its compact range does not give its signed root", name)
				}
				continue
			}
			for k := 0; k < len(c.leaves); k += sha256.Size {
				if err := rng.Append(c.leaves[k:k+sha256.Size:k+sha256.Size], nil); err != nil {
					return err
				}
				if err := checkExported(); err != nil {
					return err
				}
			}
			if rng.Begin() != 0 {
				continue // after a gap there is no root to compare
			}
			if root := rootOf(rng.Hashes()); root != c.root {
				rep.problem("%s/%s: its signed checkpoint (size %d) has root %x, but its records and those before it give %x: a record was modified, deleted, added or reordered", backend.AuditFile, entryName(logID, start), rng.End(), c.root, root)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case newestCP != nil:
		rep.Newest = newestCP
	case haveNewest:
		// The log's last entry did not check: the newest is one before
		// it, whose checkpoint the parallel pass did not keep.
		_, cp, err := entryAt(newest)
		if err != nil {
			rep.problem("%v (it changed while being verified)", err)
		} else {
			rep.Newest = cp
		}
	}
	rep.Records = rng.End()
	if o.From != nil {
		rep.Resumed = o.From.Size
	}
	for size := range exported {
		rep.problem("the exported checkpoint of size %d is ahead of the log, which has %d records: the repository was rolled back to an older state, or its newest entries deleted", size, rng.End())
	}
	return rep, nil
}

// resume starts an incremental verification at checkpoint from: the
// entry ending at its size must hold a compact range that gives its root.
// It returns the range and the entries after from; a nil range (with the
// problem in rep) when the log does not pass through from.
func resume(ctx context.Context, be backend.Backend, logID string, starts []uint64, from *Checkpoint, rep *Report) (*compact.Range, []uint64, error) {
	rng, root, problem, err := rangeAt(ctx, be, logID, starts, from.Size)
	if err != nil {
		return nil, nil, err
	}
	if problem == "" && !bytes.Equal(root, from.Root) {
		problem = fmt.Sprintf("the entry ending at %d does not give the root of the checkpoint to resume from (%x)", from.Size, from.Root)
	}
	if problem != "" {
		rep.problem("%s: the log was rewritten or rolled back since the checkpoint to resume from; verify it in full", problem)
		return nil, nil, nil
	}
	i, _ := slices.BinarySearch(starts, from.Size)
	return rng, starts[i:], nil
}

// rangeAt returns the compact range, and its root, that the entry ending
// at size holds (not checked against its records: an incremental
// verification takes them as verified before), or the problem when no
// entry of the log ends there.
func rangeAt(ctx context.Context, be backend.Backend, logID string, starts []uint64, size uint64) (*compact.Range, []byte, string, error) {
	i, _ := slices.BinarySearch(starts, size) // entries at and after size
	if i == 0 {
		return nil, nil, fmt.Sprintf("the log has no entry before position %d", size), nil
	}
	prev := starts[i-1]
	h := backend.Handle{Type: backend.AuditFile, Name: entryName(logID, prev)}
	b, err := backend.ReadAll(ctx, be, h, maxEntryLen)
	if err != nil {
		return nil, nil, "", fmt.Errorf("reading %s: %w", h, err)
	}
	e, err := checkEntry(h, b, logID, prev, nil)
	if err != nil {
		return nil, nil, err.Error(), nil
	}
	if e.size() != size {
		return nil, nil, fmt.Sprintf("%s ends at %d, not at %d", h, e.size(), size), nil
	}
	rng, err := rangeFactory.NewRange(0, e.size(), e.frontier)
	var root []byte
	if err == nil {
		root, err = rng.GetRootHash(nil)
	}
	if err != nil {
		return nil, nil, fmt.Sprintf("%s: its compact range: %v", h, err), nil
	}
	return rng, root, "", nil
}

// ParseVerifier parses a verifier key ("nestguard-audit-<id>+<hash>+<key>").
func ParseVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	return v, nil
}
