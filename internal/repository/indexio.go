package repository

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
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
// during a backup, bounding what a crash leaves unindexed. indexFlushBlobs
// bounds the blobs waiting for their index object as well: a pack of tiny
// files holds some 60,000 blobs, and 16 of them waited as 80 MB of
// entries (a third of the memory of a backup of 1,000,000 tiny files),
// where an index object of 65,536 blobs is 3 MB.
const (
	indexFlushPacks = 16
	indexFlushBlobs = 1 << 16
)

// LoadIndex reads every index object not yet loaded into the in-memory
// index. It can be called again to add the index objects written since.
// Unreadable index objects are recorded (see IndexErrors) and skipped;
// while any is, the headers of the packs no readable index object lists
// are read instead (see HeaderPacks), so that one damaged index object
// loses nothing that intact packs hold. LoadIndex fails only when a
// listing or a pack read fails, or the storage does not answer for an
// index object (backend.ErrUnavailable: an outage is not damage).
func (r *Repository) LoadIndex(ctx context.Context) error {
	objs, err := r.listIndexObjects(ctx)
	if err != nil {
		return err
	}
	if err := r.loadIndexCache(ctx, objs); err != nil {
		return err
	}
	ids := make([]id.ID, len(objs))
	for i, o := range objs {
		ids[i] = o.id
	}
	if err := r.loadIndexObjects(ctx, ids); err != nil {
		return err
	}
	if len(r.IndexErrors()) == 0 {
		return nil
	}
	return r.indexFromHeaders(ctx)
}

// listedObject is an index object and its stored size.
type listedObject struct {
	id   id.ID
	size int64
}

func (r *Repository) listIndexObjects(ctx context.Context) ([]listedObject, error) {
	var out []listedObject
	err := r.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		oid, err := id.Parse(fi.Name)
		if err != nil {
			r.log.Warn("ignoring foreign object", "type", backend.IndexFile, "name", fi.Name)
			return nil
		}
		out = append(out, listedObject{oid, fi.Size})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", backend.IndexFile, err)
	}
	return out, nil
}

// loadIndexObjects reads the index objects of ids not yet loaded into the
// in-memory index.
func (r *Repository) loadIndexObjects(ctx context.Context, ids []id.ID) error {
	r.idxMu.Lock()
	ids = slices.DeleteFunc(slices.Clone(ids), func(i id.ID) bool { _, ok := r.loadedIndex[i]; return ok })
	r.idxMu.Unlock()
	return r.readIndexObjects(ctx, ids, func(iid id.ID, f *index.File) error {
		for _, p := range f.Packs {
			for _, e := range p.Blobs {
				e.Pack = p.Pack
				r.idx.Add(e)
			}
			delete(r.headerPacks, p.Pack)
		}
		r.loadedIndex[iid] = struct{}{}
		return nil
	})
}

// readIndexObjects reads the index objects of ids, r.metaReads at once,
// and calls use, under r.idxMu, with each one read. An index object that
// cannot be read is recorded (IndexErrors) and skipped; one removed since
// listed is skipped.
func (r *Repository) readIndexObjects(ctx context.Context, ids []id.ID, use func(id.ID, *index.File) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.metaReads)
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
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed since listed: superseded (see RepairIndex)
				}
				if errors.Is(err, backend.ErrUnavailable) {
					// Not damage: the storage did not answer, and
					// the packs' headers would not read either.
					return fmt.Errorf("reading index/%s: %w", iid, err)
				}
				if slices.ContainsFunc(r.idxErrors, func(e IndexError) bool { return e.ID == iid }) {
					return nil
				}
				r.idxErrors = append(r.idxErrors, IndexError{ID: iid, Err: err})
				r.log.Warn("unreadable index object", "object", "index/"+iid.String(), "err", err)
				return nil
			}
			if err := use(iid, f); err != nil {
				return err
			}
			// Read now after failing before (a read error that passed).
			r.idxErrors = slices.DeleteFunc(r.idxErrors, func(e IndexError) bool { return e.ID == iid })
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

// HeaderPacks lists the packs whose blobs LoadIndex took from their headers
// because no readable index object lists them, and that no index object
// written since lists either. While an index object is unreadable, these
// are the packs it may have listed (or packs of an interrupted or running
// backup).
func (r *Repository) HeaderPacks() []id.ID {
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	out := make([]id.ID, 0, len(r.headerPacks))
	for p := range r.headerPacks {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b id.ID) int { return slices.Compare(a[:], b[:]) })
	return out
}

// indexFromHeaders reads the headers of the packs no loaded index object
// lists into the in-memory index, without writing an index object (a
// restore or verify writes nothing): the fallback for unreadable index
// objects. Packs whose header is damaged are skipped with a warning.
func (r *Repository) indexFromHeaders(ctx context.Context) error {
	pids, err := r.unlistedPacks(ctx)
	if err != nil {
		return err
	}
	found, _, err := r.readHeaders(ctx, pids)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return nil
	}
	r.idxMu.Lock()
	for _, pb := range found {
		r.headerPacks[pb.Pack] = pb
	}
	var names []string
	for _, ie := range r.idxErrors {
		names = append(names, "index/"+ie.ID.String())
	}
	r.idxMu.Unlock()
	r.log.Warn("index objects cannot be read: blobs located from the headers of the packs no readable index lists; run 'nestguard repair index'",
		"damaged", strings.Join(names, ", "), "packs", len(found))
	return nil
}

// unlistedPacks lists the packs that no loaded index object lists, nor
// LoadIndex read from headers.
func (r *Repository) unlistedPacks(ctx context.Context) ([]id.ID, error) {
	known := make(map[id.ID]struct{})
	for _, p := range r.idx.Packs() {
		known[p] = struct{}{}
	}
	var out []id.ID
	err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		pid, err := id.Parse(fi.Name)
		if err != nil {
			return nil
		}
		if _, ok := known[pid]; !ok {
			out = append(out, pid)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing packs: %w", err)
	}
	return out, nil
}

// readHeaders reads the headers of pids and adds their blobs to the
// in-memory index. A pack whose header is damaged is skipped with a
// warning and returned in bad; other read errors fail.
func (r *Repository) readHeaders(ctx context.Context, pids []id.ID) (found []index.PackBlobs, bad []id.ID, err error) {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.metaReads)
	for _, pid := range pids {
		g.Go(func() error {
			blobs, _, err := r.PackHeader(gctx, pid)
			if err != nil {
				if errors.Is(err, ErrObjectCorrupted) {
					// Nothing indexes the pack: nothing is lost that
					// was not already. verify reports it.
					r.log.Warn("skipping unindexed pack with an unreadable header", "pack", pid.String(), "err", err)
					mu.Lock()
					bad = append(bad, pid)
					mu.Unlock()
					return nil
				}
				if errors.Is(err, fs.ErrNotExist) {
					return nil // gone since listed
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
		return nil, nil, err
	}
	return found, bad, nil
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
	if fn := r.onIndexGrowth.Load(); fn != nil {
		(*fn)(r.idx.MemoryBytes())
	}
	r.idxMu.Lock()
	r.pendingIndex = append(r.pendingIndex, pb)
	r.pendingBlobs += len(pb.Blobs)
	var batch []index.PackBlobs
	if len(r.pendingIndex) >= indexFlushPacks || r.pendingBlobs >= indexFlushBlobs {
		batch, r.pendingIndex, r.pendingBlobs = r.pendingIndex, nil, 0
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
	r.pendingIndex, r.pendingBlobs = nil, 0
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
	r.wroteIndex[oid] = struct{}{}
	r.idxMu.Unlock()
	return nil
}

// PackHeader reads and authenticates the header of pack pid. It reads the
// whole pack: the header is sealed with the hash of the bytes before it as
// associated data, so that junk with a real pack's header and trailer
// appended is not taken for that pack (its blobs would be indexed there,
// and retention and holds would land on the fake), and the pack's bytes
// must hash to its name.
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
	end := buf[len(buf)-pack.TrailerSize-hdrLen:] // the sealed header and the trailer
	bodyLen := size - int64(len(end))
	bodyHash, err := r.hashPack(ctx, h, pid, bodyLen, end)
	if err != nil {
		return nil, size, err
	}
	plain, err := r.key.Open(nil, end[:hdrLen], adPackHeader(bodyHash))
	if err != nil {
		return nil, size, openFailed(fmt.Sprintf("pack %s header", pid.Short()), err)
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

// hashPack reads the first bodyLen bytes of pack h and returns their
// object hash, checking that they followed by end hash to the pack's name.
func (r *Repository) hashPack(ctx context.Context, h backend.Handle, pid id.ID, bodyLen int64, end []byte) ([]byte, error) {
	whole := r.objects.New()
	if bodyLen > 0 {
		rd, err := r.be.Load(ctx, h, 0, bodyLen)
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(whole, rd)
		rd.Close()
		if err == nil && n != bodyLen {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, fmt.Errorf("reading pack %s: %w", pid.Short(), err)
		}
	}
	body := whole.Sum(nil)
	whole.Write(end)
	if id.ID(whole.Sum(nil)) != pid {
		return nil, fmt.Errorf("pack %s: %w: its bytes do not hash to its name", pid.Short(), ErrObjectCorrupted)
	}
	return body, nil
}

// IndexOrphanPacks finds packs that no index object mentions (left by an
// interrupted backup, or by a concurrent one still running, or listed only
// by an unreadable index object), reads their headers and writes an index
// object for them, so their blobs are reused instead of rewritten and
// restores find them without reading headers again. A pack in candidates,
// the packs prune's deletion-candidate records name (internal/candidates),
// is never indexed: a prune unindexes such a pack before it deletes it. It
// returns how many packs it indexed.
func (r *Repository) IndexOrphanPacks(ctx context.Context, candidates map[id.ID]struct{}) (int, error) {
	n, _, _, err := r.indexOrphans(ctx, candidates)
	return n, err
}

// indexOrphans is IndexOrphanPacks for the packs not in skip; it also
// returns the unindexed packs whose header is damaged, and those it left
// because skip holds them.
func (r *Repository) indexOrphans(ctx context.Context, skip map[id.ID]struct{}) (int, []id.ID, []id.ID, error) {
	orphans, err := r.unlistedPacks(ctx)
	if err != nil {
		return 0, nil, nil, err
	}
	var skipped []id.ID
	orphans = slices.DeleteFunc(orphans, func(p id.ID) bool {
		_, ok := skip[p]
		if ok {
			skipped = append(skipped, p)
		}
		return ok
	})
	found, bad, err := r.readHeaders(ctx, orphans)
	if err != nil {
		return 0, nil, nil, err
	}
	r.idxMu.Lock()
	for _, pb := range r.headerPacks {
		if _, ok := skip[pb.Pack]; ok {
			// Read by the fallback of LoadIndex: kept in memory for
			// readers while the pack exists, never written.
			skipped = append(skipped, pb.Pack)
			continue
		}
		found = append(found, pb)
	}
	r.idxMu.Unlock()
	total := len(found)
	// An index object holds at most maxIndexPacks packs, far below the
	// size limit of a stored object.
	for len(found) > 0 {
		n := min(len(found), maxIndexPacks)
		if err := r.writeIndex(ctx, found[:n]); err != nil {
			return 0, nil, nil, err
		}
		r.idxMu.Lock()
		for _, pb := range found[:n] {
			delete(r.headerPacks, pb.Pack)
		}
		r.idxMu.Unlock()
		found = found[n:]
	}
	slices.SortFunc(skipped, func(a, b id.ID) int { return slices.Compare(a[:], b[:]) })
	return total, bad, skipped, nil
}

// maxIndexPacks bounds the packs of one index object written for orphans:
// 4096 packs of ~20 blobs is about 4 MiB.
const maxIndexPacks = 4096

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
