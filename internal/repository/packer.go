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
// A backend that streams (backend.Streamer, the local directory) receives
// each blob as it is added (the local one writes packs past the page
// cache, in a few blocks of 4 MiB); for the others (S3) a pack is spooled
// to an unnamed temporary file and saved whole. Either way a pack is not
// held in memory.
type packer struct {
	r   *Repository
	sem chan struct{}
	wg  sync.WaitGroup

	mu       sync.Mutex
	cur      *openPack
	inflight map[id.ID]struct{} // sealed but not yet in a durable pack
	err      error              // first write failure; sticks
}

type openPack struct {
	w     backend.PendingObject
	hash  hash.Hash // of everything written: the pack's name
	size  int
	blobs []pack.Blob
}

func (op *openPack) write(b []byte) error {
	op.hash.Write(b)
	op.size += len(b)
	_, err := op.w.Write(b)
	return err
}

func newPacker(r *Repository, uploads int) *packer {
	return &packer{r: r, sem: make(chan struct{}, uploads), inflight: make(map[id.ID]struct{})}
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

// add appends a sealed blob to the open pack and finishes the pack when
// full. sealed may be reused once add returns.
func (p *packer) add(ctx context.Context, t index.BlobType, bid id.ID, sealed []byte, rawLen int) error {
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return err
	}
	var full *openPack
	// A blob that would overflow the open pack starts the next one, so a
	// pack never grows past the pack size plus its header.
	if p.cur != nil && len(p.cur.blobs) > 0 && p.cur.size+len(sealed) > p.r.cfg.PackSize {
		full, p.cur = p.cur, nil
	}
	if p.cur == nil {
		w, err := p.create(ctx)
		if err != nil {
			p.mu.Unlock()
			return p.finish(ctx, full, err)
		}
		p.cur = &openPack{w: w, hash: p.r.objects.New()}
	}
	cur := p.cur
	cur.blobs = append(cur.blobs, pack.Blob{Type: uint8(t), ID: bid, Offset: uint32(cur.size),
		Length: uint32(len(sealed)), RawLength: uint32(rawLen)})
	if err := cur.write(sealed); err != nil {
		// The pack is lost with every blob in it: the backup must fail
		// rather than reference them.
		p.cur = nil
		err = fmt.Errorf("writing pack: %w", err)
		p.forgetLocked(cur, err)
		p.mu.Unlock()
		cur.w.Abort()
		return p.finish(ctx, full, err)
	}
	p.mu.Unlock()
	return p.finish(ctx, full, nil)
}

// finish uploads full, if any, and returns err or the upload's error.
func (p *packer) finish(ctx context.Context, full *openPack, err error) error {
	if full == nil {
		return err
	}
	return errors.Join(err, p.upload(ctx, full))
}

// create starts a pack: streamed to the backend when it can, else to a
// spool file.
func (p *packer) create(ctx context.Context) (backend.PendingObject, error) {
	if st, ok := p.r.be.(backend.Streamer); ok {
		po, err := st.Create(ctx, backend.PackFile)
		if err != nil {
			return nil, err
		}
		return &coalesced{PendingObject: po, w: bufio.NewWriterSize(po, streamBuffer)}, nil
	}
	f, err := os.CreateTemp("", "nestguard-pack-*")
	if err != nil {
		return nil, spoolError(err)
	}
	// Unnamed from the start: a killed backup leaves nothing behind.
	os.Remove(f.Name())
	sp := &spooledPack{be: p.r.be, f: f}
	return &coalesced{PendingObject: sp, w: bufio.NewWriterSize(sp, streamBuffer)}, nil
}

// streamBuffer gathers small blobs into fewer writes: a pack of small files
// holds thousands of blobs, and a system call each is CPU under the
// packer's lock. Blobs larger than it are written directly.
const streamBuffer = 256 << 10

// coalesced is a streamed or spooled pack written through a buffer.
type coalesced struct {
	backend.PendingObject
	w *bufio.Writer
}

func (c *coalesced) Write(b []byte) (int, error) { return c.w.Write(b) }

func (c *coalesced) Commit(ctx context.Context, name string) error {
	if err := c.w.Flush(); err != nil {
		c.PendingObject.Abort()
		return err
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

// flush uploads the open pack and waits for every upload.
func (p *packer) flush(ctx context.Context) error {
	p.mu.Lock()
	op := p.cur
	p.cur = nil
	p.mu.Unlock()
	if op != nil {
		if len(op.blobs) == 0 {
			op.w.Abort()
		} else if err := p.upload(ctx, op); err != nil {
			return err
		}
	}
	p.wg.Wait()
	return p.failed()
}
