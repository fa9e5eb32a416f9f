package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/pack"
)

// packer gathers sealed blobs into packs and uploads full packs in the
// background, at most `uploads` at a time so memory stays bounded: a
// producer that fills a pack while every upload slot is busy waits.
type packer struct {
	r   *Repository
	sem chan struct{}
	wg  sync.WaitGroup
	// free recycles pack buffers: a pack is tens of MiB, and allocating one
	// per pack makes the garbage collector, not the data, set the RSS.
	free chan []byte

	mu       sync.Mutex
	cur      *openPack
	inflight map[id.ID]struct{} // sealed but not yet in an uploaded pack
	err      error              // first upload failure; sticks
}

type openPack struct {
	buf   []byte
	blobs []pack.Blob
}

func newPacker(r *Repository, uploads int) *packer {
	return &packer{r: r, sem: make(chan struct{}, uploads), free: make(chan []byte, uploads+1), inflight: make(map[id.ID]struct{})}
}

// reserve marks bid as being saved. It returns false if the blob is known
// or already in flight, in which case the caller must not save it again.
func (p *packer) reserve(bid id.ID) bool {
	if p.r.idx.Has(bid) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.inflight[bid]; ok || p.r.idx.Has(bid) {
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

// add appends a sealed blob to the open pack and starts its upload when full.
func (p *packer) add(ctx context.Context, t index.BlobType, bid id.ID, sealed []byte, rawLen int) error {
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return err
	}
	var full *openPack
	// A blob that would overflow the open pack starts the next one, so a
	// pack buffer never grows past the pack size plus its header.
	if p.cur != nil && len(p.cur.blobs) > 0 && len(p.cur.buf)+len(sealed) > p.r.cfg.PackSize {
		full, p.cur = p.cur, nil
	}
	if p.cur == nil {
		p.cur = &openPack{buf: p.newBuf()}
	}
	cur := p.cur
	cur.blobs = append(cur.blobs, pack.Blob{Type: uint8(t), ID: bid, Offset: uint32(len(cur.buf)),
		Length: uint32(len(sealed)), RawLength: uint32(rawLen)})
	cur.buf = append(cur.buf, sealed...)
	p.mu.Unlock()
	if full != nil {
		return p.upload(ctx, full)
	}
	return nil
}

// newBuf returns an empty pack buffer, recycled when one is free. Its
// capacity holds a full pack and a header of about 45 bytes a blob, so
// appending never reallocates in the usual case.
func (p *packer) newBuf() []byte {
	select {
	case b := <-p.free:
		return b[:0]
	default:
		return make([]byte, 0, p.r.cfg.PackSize+p.r.cfg.PackSize/64+crypto.Overhead+pack.TrailerSize)
	}
}

func (p *packer) recycle(b []byte) {
	select {
	case p.free <- b[:0]:
	default:
	}
}

// upload seals the header of op and writes it in the background once an
// upload slot is free.
func (p *packer) upload(ctx context.Context, op *openPack) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
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
		err := p.write(ctx, op)
		p.recycle(op.buf)
		p.mu.Lock()
		if err != nil && p.err == nil {
			p.err = err
		}
		for _, b := range op.blobs {
			delete(p.inflight, b.ID)
		}
		p.mu.Unlock()
	}()
	return nil
}

func (p *packer) write(ctx context.Context, op *openPack) error {
	hdr := p.r.key.Seal(nil, pack.EncodeHeader(op.blobs))
	op.buf = append(op.buf, hdr...)
	op.buf = append(op.buf, pack.Trailer(len(hdr))...)
	pid := id.Hash(op.buf)
	h := backend.Handle{Type: backend.PackFile, Name: pid.String()}
	err := p.r.be.Save(ctx, h, bytes.NewReader(op.buf), int64(len(op.buf)))
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("writing pack %s: %w", pid.Short(), err)
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
	if op != nil && len(op.blobs) > 0 {
		if err := p.upload(ctx, op); err != nil {
			return err
		}
	}
	p.wg.Wait()
	return p.failed()
}
