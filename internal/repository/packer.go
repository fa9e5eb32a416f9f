package repository

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/pack"
)

// packer gathers sealed blobs into packs and finishes full packs in the
// background, at most `uploads` at a time so memory stays bounded: a
// producer that fills a pack while every upload slot is busy waits.
//
// Callers fill packs in parallel, each holding an open pack of its own
// while it adds a blob (up to openPacks at once), so that sealing a blob
// into its pack and hashing it there need no lock. A pack lent its memory
// by its object (backend.Lender: a local pack written past the page
// cache) has each blob sealed straight into it.
//
// A backend that streams (backend.Streamer, the local directory) receives
// each blob as it is added (the local one writes packs past the page
// cache, in a few blocks of 4 MiB); for the others (S3) a pack is spooled
// to an unnamed temporary file and saved whole. Either way a pack is not
// held in memory.
type packer struct {
	r       *Repository
	sem     chan struct{} // upload slots
	maxOpen int           // openPacks, or fewer with fewer workers
	wg      sync.WaitGroup

	mu       sync.Mutex
	given    sync.Cond          // signalled when a pack is given back, broadcast when one is gone, on a failure and at the end of a waiter's context
	waiting  int                // callers of take waiting on given
	open     int                // open packs, held or idle: at most maxOpen
	idle     []*openPack        // open packs no caller holds, the latest given back last
	inflight map[id.ID]struct{} // sealed but not yet in a durable pack
	err      error              // first write failure; sticks
}

// openPacks bounds the packs filled at once: each holds a block of its
// own (4 MiB, local) and sealing into it and hashing it are about a third
// of a backup's CPU time, so four keep a dozen workers busy.
const openPacks = 4

// parallelBlob is the smallest blob that opens another pack when every
// open one is held: the chunks of a large file (the chunker's minimum),
// whose sealing is worth running in parallel. Smaller blobs wait for a
// pack, so that a backup of small changes leaves one partly filled pack,
// not one per worker.
const parallelBlob = 512 << 10

type openPack struct {
	w     backend.PendingObject
	hash  hash.Hash // of everything written: the pack's name
	size  int
	blobs []pack.Blob
}

// sealer produces a blob's sealed bytes: into room when room is not nil
// (memory of the pack itself, of exactly their length), else into memory
// of its own, which it returns and which may be reused once add returns.
type sealer func(room []byte) ([]byte, error)

// appendSealed adds the n sealed bytes seal produces to op. It reports
// whether op was damaged by a failure (memory lent to a seal that failed,
// a failed write): then the pack is lost.
func (op *openPack) appendSealed(n int, seal sealer) (damaged bool, err error) {
	var room []byte
	if l, ok := op.w.(backend.Lender); ok {
		room = l.Lend(n)
	}
	sealed, err := seal(room)
	if err == nil && (len(sealed) != n || room != nil && n > 0 && &sealed[0] != &room[0]) {
		err = fmt.Errorf("sealed %d bytes where %d were expected", len(sealed), n)
	}
	if err != nil {
		return room != nil, err
	}
	op.hash.Write(sealed)
	op.size += n
	if room == nil {
		if _, err := op.w.Write(sealed); err != nil {
			return true, fmt.Errorf("writing pack: %w", err)
		}
	}
	return false, nil
}

// copied is the sealer of bytes already made: b, copied into room when
// there is room.
func copied(b []byte) sealer {
	return func(room []byte) ([]byte, error) {
		if room == nil {
			return b, nil
		}
		return room[:copy(room, b)], nil
	}
}

// write adds b, not a blob, to op: its header and trailer. They go into
// lent memory too where the object lends it: a Write of a streamed pack
// makes its buffer (coalesced), 256 KiB for a few bytes.
func (op *openPack) write(b []byte) error {
	_, err := op.appendSealed(len(b), copied(b))
	return err
}

func newPacker(r *Repository, uploads int) *packer {
	p := &packer{r: r, sem: make(chan struct{}, uploads), maxOpen: min(Workers(), openPacks),
		inflight: make(map[id.ID]struct{})}
	p.given.L = &p.mu
	return p
}

// reserve marks bid as being saved. It returns false if the blob is
// reusable (known outside the deletion-candidate packs, see
// Repository.Reusable) or already in flight, in which case the caller must
// not save it again.
func (p *packer) reserve(bid id.ID) bool {
	if p.r.Reusable(bid) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.inflight[bid]; ok || p.r.Reusable(bid) {
		return false
	}
	p.inflight[bid] = struct{}{}
	return true
}

// reserveAgain marks bid as being saved although the index may have it
// (a repack stores it again). It returns false if this process is already
// storing it.
func (p *packer) reserveAgain(bid id.ID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.inflight[bid]; ok {
		return false
	}
	p.inflight[bid] = struct{}{}
	return true
}

// unreserve forgets a reservation whose blob was never added.
func (p *packer) unreserve(bid id.ID) {
	p.mu.Lock()
	delete(p.inflight, bid)
	p.mu.Unlock()
}

func (p *packer) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// add appends a blob of n sealed bytes, made by seal, to an open pack,
// which the caller holds meanwhile. A blob that would overflow a pack
// starts the next one, so a pack never grows past the pack size plus its
// header.
func (p *packer) add(ctx context.Context, t index.BlobType, bid id.ID, n, rawLen int, seal sealer) error {
	op, err := p.take(ctx, n)
	if err != nil {
		return err
	}
	off := op.size
	if damaged, err := op.appendSealed(n, seal); damaged {
		// The pack is lost with every blob in it: the backup must fail
		// rather than reference them.
		op.w.Abort()
		p.lose(op, err)
		return err
	} else if err != nil {
		p.give(op)
		return err
	}
	op.blobs = append(op.blobs, pack.Blob{Type: uint8(t), ID: bid, Offset: uint32(off),
		Length: uint32(n), RawLength: uint32(rawLen)})
	p.give(op)
	return nil
}

// take returns an open pack with room for n more bytes for the caller to
// hold until it gives it back (give) or loses it (lose): the one given
// back last, or a new one (see parallelBlob). A pack without room is
// uploaded.
func (p *packer) take(ctx context.Context, n int) (*openPack, error) {
	p.mu.Lock()
	var op *openPack
	var stopWaking func() bool
	var err error
	for {
		if err = p.err; err == nil {
			err = ctx.Err()
		}
		if err != nil {
			break
		}
		if k := len(p.idle); k > 0 {
			op, p.idle = p.idle[k-1], p.idle[:k-1]
			break
		}
		if p.open == 0 || n >= parallelBlob && p.open < p.maxOpen {
			p.open++ // a new pack, below
			break
		}
		// A holder gives one back soon: it is only sealing. A failure
		// (forgetLocked) or the end of ctx wakes every waiter.
		if stopWaking == nil {
			stopWaking = context.AfterFunc(ctx, p.wakeAll)
		}
		p.waiting++
		p.given.Wait()
		p.waiting--
	}
	if stopWaking != nil {
		stopWaking() // it does not wait for wakeAll, which takes p.mu
	}
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	var full *openPack
	if op != nil && len(op.blobs) > 0 && op.size+n > p.r.cfg.PackSize {
		full, op = op, nil // a new pack replaces it
	}
	p.mu.Unlock()
	if full != nil {
		if err := p.upload(ctx, full); err != nil {
			p.closed()
			return nil, err
		}
	}
	if op != nil {
		return op, nil
	}
	w, err := p.create(ctx)
	if err != nil {
		p.closed()
		return nil, err
	}
	return &openPack{w: w, hash: p.r.objects.New()}, nil
}

// wakeAll wakes every caller waiting in take.
func (p *packer) wakeAll() {
	p.mu.Lock()
	p.given.Broadcast()
	p.mu.Unlock()
}

// give puts back a pack taken with take.
func (p *packer) give(op *openPack) {
	p.mu.Lock()
	p.idle = append(p.idle, op)
	p.given.Signal() // one pack for one waiter
	p.mu.Unlock()
}

// lose ends the hold of a pack lost with err: its blobs' reservations end
// and err fails the backup.
func (p *packer) lose(op *openPack, err error) {
	p.forget(op, err)
	p.closed()
}

// closed counts an open pack gone: uploaded, lost, or never made.
func (p *packer) closed() {
	p.mu.Lock()
	p.open--
	p.given.Broadcast()
	p.mu.Unlock()
}

// create starts a pack: streamed to the backend when it can, else to a
// spool file.
func (p *packer) create(ctx context.Context) (backend.PendingObject, error) {
	if st, ok := p.r.be.(backend.Streamer); ok {
		po, err := st.Create(ctx, backend.PackFile)
		if err != nil {
			return nil, err
		}
		return &coalesced{PendingObject: po}, nil
	}
	f, err := os.CreateTemp("", "nestguard-pack-*")
	if err != nil {
		return nil, spoolError(err)
	}
	// Unnamed from the start: a killed backup leaves nothing behind.
	os.Remove(f.Name())
	sp := &spooledPack{be: p.r.be, f: f}
	return &coalesced{PendingObject: sp}, nil
}

// streamBuffer gathers small blobs into fewer writes: a pack of small files
// holds thousands of blobs, and a system call each is CPU spent while the
// pack is held. Blobs larger than it are written directly.
const streamBuffer = 256 << 10

// coalesced is a streamed or spooled pack written through a buffer, made
// at the first Write: a pack whose object lends its memory (Lend) may
// never need one.
type coalesced struct {
	backend.PendingObject
	w    *bufio.Writer
	lent bool // the object has lent memory
}

func (c *coalesced) Write(b []byte) (int, error) {
	if c.w == nil {
		c.w = bufio.NewWriterSize(c.PendingObject, streamBuffer)
	}
	return c.w.Write(b)
}

// Lend implements backend.Lender when the object does, after what the
// buffer holds.
func (c *coalesced) Lend(n int) []byte {
	l, ok := c.PendingObject.(backend.Lender)
	if !ok {
		return nil
	}
	if c.w != nil && c.w.Buffered() > 0 {
		// Flushed only for an object that lent before: one that does not
		// (a local file system without direct writes) would otherwise
		// take every blob in a write of its own.
		if !c.lent || c.w.Flush() != nil {
			return nil // a failed flush fails the Write that follows
		}
	}
	room := l.Lend(n)
	if room != nil {
		c.lent = true
	}
	return room
}

func (c *coalesced) Commit(ctx context.Context, name string) error {
	if c.w != nil {
		if err := c.w.Flush(); err != nil {
			c.PendingObject.Abort()
			return err
		}
	}
	return c.PendingObject.Commit(ctx, name)
}

// spooledPack is a backend.PendingObject for backends that cannot stream:
// the pack goes to a temporary file and is saved whole on Commit. Its pages
// are page cache, which the kernel may drop or write out, not the process's
// memory: gathering packs in memory cost 16 MiB per upload in flight, and
// half again the RSS of a local backup.
type spooledPack struct {
	be   backend.Backend
	f    *os.File
	size int64
}

func (s *spooledPack) Write(b []byte) (int, error) {
	n, err := s.f.Write(b)
	s.size += int64(n)
	if err != nil {
		return n, spoolError(err)
	}
	return n, nil
}

// spoolError says where spool files go and how to move them.
func spoolError(err error) error {
	return fmt.Errorf("spooling a pack for upload in %s: %w (set TMPDIR to a directory with room for a pack per upload in flight)", os.TempDir(), err)
}

func (s *spooledPack) Commit(ctx context.Context, name string) error {
	defer s.Abort()
	h := backend.Handle{Type: backend.PackFile, Name: name}
	return s.be.Save(ctx, h, io.NewSectionReader(s.f, 0, s.size), s.size)
}

func (s *spooledPack) Abort() error {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	return nil
}

// upload writes the header of op and commits it in the background once an
// upload slot is free.
func (p *packer) upload(ctx context.Context, op *openPack) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		op.w.Abort()
		p.forget(op, ctx.Err())
		return ctx.Err()
	}
	// The upload outlives the caller's context: SaveBlob's caller may be a
	// pipeline stage that ends (and cancels) before the pack is durable.
	// Flush waits for it; a process that is told to stop exits anyway.
	ctx = context.WithoutCancel(ctx)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { <-p.sem }()
		p.forget(op, p.write(ctx, op))
	}()
	return nil
}

// forget ends the reservations of op's blobs: they are indexed now, or
// lost with err, which then fails the backup.
func (p *packer) forget(op *openPack, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetLocked(op, err)
}

// forgetLocked is forget with p.mu held.
func (p *packer) forgetLocked(op *openPack, err error) {
	if err != nil && p.err == nil {
		p.err = err
		p.given.Broadcast() // the waiters in take return it
	}
	for _, b := range op.blobs {
		delete(p.inflight, b.ID)
	}
}

func (p *packer) write(ctx context.Context, op *openPack) error {
	// op.hash has seen the sealed blobs so far: Sum reads its state
	// without changing it.
	hdr, err := p.r.key.Seal(nil, pack.EncodeHeader(op.blobs), adPackHeader(op.hash.Sum(nil)))
	if err == nil {
		err = op.write(hdr)
	}
	if err == nil {
		err = op.write(pack.Trailer(len(hdr)))
	}
	if err != nil {
		op.w.Abort()
		return fmt.Errorf("writing pack: %w", err)
	}
	pid := id.ID(op.hash.Sum(nil))
	err = op.w.Commit(ctx, pid.String())
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("writing pack %s: %w", pid.Short(), err)
	}
	p.r.Stats.Packs.Add(1)
	p.r.Stats.PackBytes.Add(int64(op.size))
	if err == nil { // an identical pack that existed stored nothing new
		var n int64
		for _, b := range op.blobs {
			n += int64(b.Length)
		}
		p.r.Stats.DurableBlobs.Add(int64(len(op.blobs)))
		p.r.Stats.DurableBytes.Add(n)
	}
	// Only a durable pack is referenced: the blobs enter the index now.
	return p.r.registerPack(ctx, pid, op.blobs)
}

// discard removes the open packs no caller holds, once the uploads in
// flight have ended: a writer that failed, or stopped without flush,
// leaves none of its temporary objects behind. Their blobs were never
// durable, so nothing references them.
func (p *packer) discard() {
	p.wg.Wait()
	p.mu.Lock()
	ops := p.idle
	p.idle = nil
	p.open -= len(ops)
	for _, op := range ops {
		p.forgetLocked(op, nil)
	}
	p.given.Broadcast()
	p.mu.Unlock()
	for _, op := range ops {
		op.w.Abort()
	}
}

// flush uploads the open packs and waits for every upload. Packs held by
// callers still adding are not flushed.
func (p *packer) flush(ctx context.Context) error {
	p.mu.Lock()
	ops := p.idle
	p.idle = nil
	p.open -= len(ops)
	p.given.Broadcast()
	p.mu.Unlock()
	var err error
	for _, op := range ops {
		switch {
		case len(op.blobs) == 0:
			op.w.Abort()
		case err != nil:
			op.w.Abort()
			p.forget(op, err)
		default:
			err = p.upload(ctx, op)
		}
	}
	if err != nil {
		return err
	}
	p.wg.Wait()
	return p.failed()
}
