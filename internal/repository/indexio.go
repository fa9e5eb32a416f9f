package repository

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/pack"
)

// IndexError names an index object that could not be read.
type IndexError struct {
	ID  id.ID
	Err error
}

func (e IndexError) Error() string { return fmt.Sprintf("index %s: %v", e.ID.Short(), e.Err) }

// indexFlushPacks is how many uploaded packs are indexed per index object
// during a backup, bounding what a crash leaves unindexed.
const indexFlushPacks = 16

// LoadIndex reads every index object not yet loaded into the in-memory
// index. Unreadable index objects are recorded (see IndexErrors) and
// skipped so that verify and restore can report what they lose; LoadIndex
// fails only when the listing fails.
func (r *Repository) LoadIndex(ctx context.Context) error {
	ids, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		return err
	}
	r.idxMu.Lock()
	ids = slices.DeleteFunc(ids, func(i id.ID) bool { _, ok := r.loadedIndex[i]; return ok })
	r.idxMu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, iid := range ids {
		g.Go(func() error {
			plain, err := r.loadSealed(gctx, backend.IndexFile, iid)
			var f *index.File
			if err == nil {
				f, err = index.Decode(plain)
			}
			r.idxMu.Lock()
			defer r.idxMu.Unlock()
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				r.idxErrors = append(r.idxErrors, IndexError{ID: iid, Err: err})
				r.log.Warn("unreadable index object", "id", iid.String(), "err", err)
				return nil
			}
			for _, p := range f.Packs {
				for _, e := range p.Blobs {
					e.Pack = p.Pack
					r.idx.Add(e)
				}
			}
			r.loadedIndex[iid] = struct{}{}
			return nil
		})
	}
	return g.Wait()
}

// IndexErrors lists the index objects LoadIndex could not read.
func (r *Repository) IndexErrors() []IndexError {
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	return slices.Clone(r.idxErrors)
}

// registerPack adds the blobs of a durable pack to the in-memory index and
// to the pending index object, writing it when enough packs accumulated.
func (r *Repository) registerPack(ctx context.Context, pid id.ID, blobs []pack.Blob) error {
	pb := index.PackBlobs{Pack: pid, Blobs: make([]index.Entry, len(blobs))}
	for i, b := range blobs {
		e := index.Entry{ID: b.ID, Type: index.BlobType(b.Type), Pack: pid, Offset: b.Offset, Length: b.Length, RawLength: b.RawLength}
		pb.Blobs[i] = e
		r.idx.Add(e)
	}
	r.idxMu.Lock()
	r.pendingIndex = append(r.pendingIndex, pb)
	var batch []index.PackBlobs
	if len(r.pendingIndex) >= indexFlushPacks {
		batch, r.pendingIndex = r.pendingIndex, nil
	}
	r.idxMu.Unlock()
	if batch != nil {
		return r.writeIndex(ctx, batch)
	}
	return nil
}

func (r *Repository) flushIndex(ctx context.Context) error {
	r.idxMu.Lock()
	batch := r.pendingIndex
	r.pendingIndex = nil
	r.idxMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	return r.writeIndex(ctx, batch)
}

func (r *Repository) writeIndex(ctx context.Context, packs []index.PackBlobs) error {
	oid, err := r.saveSealed(ctx, backend.IndexFile, index.Encode(&index.File{Packs: packs}))
	if err != nil {
		return fmt.Errorf("writing index: %w", err)
	}
	r.idxMu.Lock()
	r.loadedIndex[oid] = struct{}{}
	r.idxMu.Unlock()
	return nil
}

// PackHeader reads and authenticates the header of pack pid.
func (r *Repository) PackHeader(ctx context.Context, pid id.ID) ([]pack.Blob, int64, error) {
	h := backend.Handle{Type: backend.PackFile, Name: pid.String()}
	fi, err := r.be.Stat(ctx, h)
	if err != nil {
		return nil, 0, err
	}
	size := fi.Size
	if size < pack.TrailerSize {
		return nil, size, fmt.Errorf("pack %s: %w: %d bytes is too short", pid.Short(), ErrObjectCorrupted, size)
	}
	// One read usually covers trailer and header: headers are ~45 bytes a blob.
	tail := min(size, 64<<10)
	buf, err := readRange(ctx, r.be, h, size-tail, tail)
	if err != nil {
		return nil, size, err
	}
	hdrLen, err := pack.ParseTrailer(buf[len(buf)-pack.TrailerSize:], size)
	if err != nil {
		return nil, size, fmt.Errorf("pack %s: %w: %v", pid.Short(), ErrObjectCorrupted, err)
	}
	if int64(hdrLen)+pack.TrailerSize > tail {
		if buf, err = readRange(ctx, r.be, h, size-pack.TrailerSize-int64(hdrLen), int64(hdrLen)+pack.TrailerSize); err != nil {
			return nil, size, err
		}
	}
	sealedHdr := buf[len(buf)-pack.TrailerSize-hdrLen : len(buf)-pack.TrailerSize]
	plain, err := r.key.Open(nil, sealedHdr, adPackHeader())
	if err != nil {
		return nil, size, fmt.Errorf("pack %s header: %w: %v", pid.Short(), ErrObjectCorrupted, err)
	}
	blobs, err := pack.DecodeHeader(plain)
	if err == nil {
		err = pack.Check(blobs, hdrLen, size)
	}
	if err != nil {
		return nil, size, fmt.Errorf("pack %s: %w: %v", pid.Short(), ErrObjectCorrupted, err)
	}
	return blobs, size, nil
}

// IndexOrphanPacks finds packs that no index object mentions (left by an
// interrupted backup, or by a concurrent one still running), reads their
// headers and indexes their blobs so they are reused instead of rewritten.
// It returns how many packs it indexed.
func (r *Repository) IndexOrphanPacks(ctx context.Context) (int, error) {
	known := make(map[id.ID]struct{})
	for _, p := range r.idx.Packs() {
		known[p] = struct{}{}
	}
	var orphans []id.ID
	err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		pid, err := id.Parse(fi.Name)
		if err != nil {
			return nil
		}
		if _, ok := known[pid]; !ok {
			orphans = append(orphans, pid)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("listing packs: %w", err)
	}
	var (
		mu    sync.Mutex
		found []index.PackBlobs
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, pid := range orphans {
		g.Go(func() error {
			blobs, _, err := r.PackHeader(gctx, pid)
			if err != nil {
				if errors.Is(err, ErrObjectCorrupted) {
					// A damaged orphan is not worth failing a backup over;
					// verify reports it.
					r.log.Warn("skipping unreadable unindexed pack", "pack", pid.String(), "err", err)
					return nil
				}
				return err
			}
			pb := index.PackBlobs{Pack: pid}
			for _, b := range blobs {
				e := index.Entry{ID: b.ID, Type: index.BlobType(b.Type), Pack: pid, Offset: b.Offset, Length: b.Length, RawLength: b.RawLength}
				r.idx.Add(e)
				pb.Blobs = append(pb.Blobs, e)
			}
			mu.Lock()
			found = append(found, pb)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if len(found) > 0 {
		if err := r.writeIndex(ctx, found); err != nil {
			return 0, err
		}
	}
	return len(found), nil
}

func readRange(ctx context.Context, be backend.Backend, h backend.Handle, off, n int64) ([]byte, error) {
	rd, err := be.Load(ctx, h, off, n)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(rd, buf); err != nil {
		return nil, fmt.Errorf("reading %s at %d: %w", h, off, err)
	}
	return buf, nil
}

func sortByOffset(es []index.Entry) {
	slices.SortFunc(es, func(a, b index.Entry) int { return int(a.Offset) - int(b.Offset) })
}
