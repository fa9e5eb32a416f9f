package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"runtime"
	"sync/atomic"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/crypto"
)

// The fast way to read a log's entries, for every reader of the whole
// log (Verify, Read, ReadTree, VerifyRead): readEntries reads them through one
// backend.WholeReader, a batch at a time on several goroutines, each
// with a buffer of its own, while the batch before is handed on in order.

// checked is what an in-order pass needs of one entry read and checked
// on its own (signature, shape), none of it in the buffer it was read
// into.
type checked struct {
	// err is why the entry does not check (nil: it does); damaged, why
	// it does not even decode as the log's entry at its position (then
	// err too), as Read sees it.
	err     error
	damaged error
	leaves  []byte            // its records' leaf hashes, sha256.Size each
	root    [sha256.Size]byte // its checkpoint's root
	cp      *Checkpoint       // its checkpoint: kept for the newest entry only
	// opened are its records opened (readOptions.key set), in order.
	opened []openedRecord
}

func (c *checked) records() int { return len(c.leaves) / sha256.Size }

// leaf is the leaf hash of the entry's i-th record, in c's storage.
func (c *checked) leaf(i int) []byte {
	return c.leaves[i*sha256.Size : (i+1)*sha256.Size : (i+1)*sha256.Size]
}

// pass calls fn, as Read does, with the records of the entry at start
// (read with readOptions.key): each record opened, or why it does not
// open; the entry's damage, once, if it does not decode.
func (c *checked) pass(start uint64, fn func(pos uint64, r *Record, err error) error) error {
	if c.damaged != nil {
		return fn(start, nil, c.damaged)
	}
	for i, o := range c.opened {
		if err := fn(start+uint64(i), o.r, o.err); err != nil {
			return err
		}
	}
	return nil
}

// openedRecord is a record opened, or why it does not open (its entry
// and position named).
type openedRecord struct {
	r   *Record
	err error
}

// readOptions say what readEntries checks and keeps of each entry.
type readOptions struct {
	// workers read entries at once (0: DefaultWorkers, or GOMAXPROCS
	// if more).
	workers int
	// verifier, if set, checks the signature of the newest entry's
	// checkpoint (the last of the starts read), of every entry's if
	// allSignatures.
	verifier      note.Verifier
	allSignatures bool
	// key, if set, opens every record (checked.opened): decrypted and
	// decoded on the reading goroutines, not in the in-order pass. The
	// records of an entry that decodes are opened even if its checkpoint
	// does not check.
	key *crypto.Key
	// decodeOnly (Read) only decodes each entry and opens its records:
	// no checkpoint, no leaf hashes; err is damaged.
	decodeOnly bool
}

// DefaultWorkers is how many entries are read at once: sized for waiting
// on reads, not for the CPUs. Entries in the page cache keep every CPU
// busy with two or three; read from disk (a million one-record entries
// with a cold cache), sixteen took 95 s where four took 118 s on the
// 2-core test machine, and an object store waits on each request.
const DefaultWorkers = 16

// readBatch is how many entries are read ahead in parallel: one batch is
// read while the one before is checked in order.
var readBatch = 4096 // a variable for tests only

// readBatchBytes ends a batch early once its entries add up to this many
// bytes, so that a log of large entries (batched records, each opened
// when readOptions.key is set) is not held readBatch entries at a time.
var readBatchBytes int64 = 64 << 20 // a variable for tests only

// entryReader reads and checks entries in one of readEntries'
// goroutines, with a buffer and a hash of its own.
type entryReader struct {
	rd         backend.WholeReader
	logID      string
	key        *crypto.Key
	decodeOnly bool
	buf        []byte
	h          hash.Hash
}

// maxKeptBuffer bounds the read buffer an entryReader keeps between
// entries (a larger entry is read into one of its own).
const maxKeptBuffer = 1 << 20

// read reads the entry at start into c, checking its signature with v
// (nil: not checked) and keeping its checkpoint if keepCheckpoint, and
// returns its length. A check that fails is c.err (and c.damaged if the
// entry does not decode); err is a failure to read.
func (er *entryReader) read(ctx context.Context, start uint64, v note.Verifier, keepCheckpoint bool, c *checked) (int, error) {
	h := backend.Handle{Type: backend.AuditFile, Name: entryName(er.logID, start)}
	b, err := er.rd.ReadAll(ctx, h.Name, maxEntryLen, er.buf)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", h, err)
	}
	if cap(b) > cap(er.buf) && cap(b) <= maxKeptBuffer {
		er.buf = b[:0]
	}
	e, err := decodeEntryAt(h, b, er.logID, start)
	if err != nil {
		c.err, c.damaged = err, err
		return len(b), nil
	}
	if er.key != nil {
		c.opened = make([]openedRecord, len(e.records))
		for i, sealed := range e.records {
			r, err := openRecord(er.key, er.logID, sealed)
			if err != nil {
				err = fmt.Errorf("%s record %d: %w", h, e.start+uint64(i), err)
			}
			c.opened[i] = openedRecord{r, err}
		}
	}
	if er.decodeOnly {
		return len(b), nil
	}
	cp, err := entryCheckpoint(h, e, er.logID, v)
	if err != nil {
		c.err = err
		return len(b), nil
	}
	c.root = [sha256.Size]byte(cp.Root) // a SHA-256 hash: checked in parsing
	c.leaves = make([]byte, 0, len(e.records)*sha256.Size)
	for _, r := range e.records {
		// leafHash, without an allocation per record
		er.h.Reset()
		er.h.Write([]byte{rfc6962.RFC6962LeafHashPrefix})
		er.h.Write(r)
		c.leaves = er.h.Sum(c.leaves)
	}
	if keepCheckpoint {
		cp.Note = bytes.Clone(cp.Note)
		c.cp = cp
	}
	return len(b), nil
}

// readEntries reads and checks log logID's entries at starts (sorted) as
// o says, in batches of up to readBatch entries and readBatchBytes bytes
// read by o.workers goroutines, and calls fn with each batch in order
// while the next one is read. An error from fn stops the reading and is
// returned; so is a failure to read (an entry missing since it was
// listed), while a check that fails is the entry's checked.err.
func readEntries(ctx context.Context, be backend.Backend, logID string, starts []uint64, o readOptions, fn func(starts []uint64, res []checked) error) error {
	if len(starts) == 0 {
		return nil
	}
	workers := o.workers
	if workers <= 0 {
		workers = max(DefaultWorkers, runtime.GOMAXPROCS(0))
	}
	rd, err := backend.OpenWholeReader(ctx, be, backend.AuditFile)
	if err != nil {
		return fmt.Errorf("reading the audit log: %w", err)
	}
	defer rd.Close()
	readers := make([]*entryReader, workers)
	for i := range readers {
		readers[i] = &entryReader{rd: rd, logID: logID, key: o.key, decodeOnly: o.decodeOnly, buf: make([]byte, 0, 16<<10), h: sha256.New()}
	}
	last := starts[len(starts)-1]
	type batch struct {
		starts []uint64
		res    []checked
	}
	ready := make(chan batch, 1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(ready)
		for rest := starts; len(rest) > 0; {
			b := batch{starts: rest[:min(readBatch, len(rest))]}
			b.res = make([]checked, len(b.starts))
			// Entries are taken in order, and none once the batch
			// holds readBatchBytes: those taken are the batch.
			var next atomic.Int64
			var read atomic.Int64
			rg, rctx := errgroup.WithContext(gctx)
			for _, er := range readers {
				rg.Go(func() error {
					for read.Load() < readBatchBytes {
						j := int(next.Add(1) - 1)
						if j >= len(b.starts) {
							return nil
						}
						start := b.starts[j]
						v := o.verifier
						if !o.allSignatures && start != last {
							v = nil
						}
						n, err := er.read(rctx, start, v, start == last, &b.res[j])
						if err != nil {
							return err
						}
						read.Add(int64(n))
					}
					return nil
				})
			}
			if err := rg.Wait(); err != nil {
				return err
			}
			n := min(int(next.Load()), len(b.starts))
			b.starts, b.res = b.starts[:n], b.res[:n]
			rest = rest[n:]
			select {
			case ready <- b:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	g.Go(func() error {
		for b := range ready {
			if err := fn(b.starts, b.res); err != nil {
				return err
			}
		}
		return nil
	})
	return g.Wait()
}
