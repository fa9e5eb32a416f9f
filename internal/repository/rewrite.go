package repository

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/compress"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// What prune needs of the engine: copying blobs into new packs although
// the index already has them (repacking), and reading, writing and
// replacing index objects (internal/prune, docs/format.md "Prune").

// CopyBlobs stores the given blobs of pack pid again, in new packs,
// although the index already has them: prune's repack. Each blob is read
// with one ranged read of pid, its seal authenticated and its length
// checked (on a copy of its sealed bytes), then its sealed bytes are added
// to an open pack unchanged: a blob's seal binds its type and ID, not its pack, so
// nothing is compressed or sealed again. The authentication proves the
// bytes are the ones sealed for that type and ID; the copy is then exactly
// as good as the original, so the blob is neither decompressed nor hashed
// again (that checks the writer, which verify --read-data does, and was
// two thirds of a prune's CPU). A blob that does not
// read from pid is read from another pack holding it and sealed anew;
// when no copy reads, CopyBlobs fails naming it, and the caller must keep
// pid. Like SaveBlob, the blobs are durable and indexed only after Flush.
func (r *Repository) CopyBlobs(ctx context.Context, pid id.ID, blobs []index.Entry) error {
	if len(blobs) == 0 {
		return nil
	}
	sortByOffset(blobs)
	start := int64(blobs[0].Offset)
	last := blobs[len(blobs)-1]
	h := backend.Handle{Type: backend.PackFile, Name: pid.String()}
	rd, err := r.be.Load(ctx, h, start, int64(last.Offset)+int64(last.Length)-start)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rd = io.NopCloser(errReader{fmt.Errorf("pack %s: %w", pid.Short(), err)})
	}
	defer rd.Close()
	pos := start
	var sealed, check, dec, skipBuf []byte
	for _, e := range blobs {
		var readErr error
		if int64(e.Offset) > pos {
			skipBuf, readErr = skip(rd, int64(e.Offset)-pos, skipBuf)
			pos = int64(e.Offset)
		}
		if readErr == nil && int64(e.Offset) == pos {
			sealed = grow(sealed, int(e.Length))
			_, readErr = io.ReadFull(rd, sealed)
			pos += int64(e.Length)
		} else if readErr == nil {
			readErr = fmt.Errorf("blob %s overlaps the one before it", e.ID.Short())
		}
		if readErr == nil {
			check = append(grow(check, 0), sealed...)
			readErr = r.authenticateBlob(e, check, &dec)
		}
		if readErr == nil {
			err = r.saveSealedAgain(ctx, e, sealed)
		} else {
			err = r.copyFromOther(ctx, e, readErr)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckCopy reads the copy of a blob that e locates and checks it as
// CopyBlobs checks what it copies: the seal authenticates under the blob's
// type and ID, and the length the body states is e.RawLength. A nil error
// means the copy is exactly the bytes sealed for the blob. Prune asks it
// before deleting a pack whose live blobs it counts on finding elsewhere.
func (r *Repository) CheckCopy(ctx context.Context, e index.Entry) error {
	sealed, err := r.readSealedAt(ctx, e)
	if err != nil {
		return err
	}
	var dec []byte
	return r.authenticateBlob(e, sealed, &dec)
}

// authenticateBlob opens the seal of blob e in sealed (overwriting it) and
// checks the body's flag and its length against e.RawLength, without
// decompressing or hashing the body (unless its length is not stated;
// then it is decoded into *dec).
func (r *Repository) authenticateBlob(e index.Entry, sealed []byte, dec *[]byte) error {
	var ad [adBlobSize]byte
	body, err := r.key.OpenInPlace(sealed, adBlob(&ad, e.Type, e.ID))
	switch {
	case err != nil:
		return openFailed(fmt.Sprintf("blob %s in pack %s", e.ID.Short(), e.Pack.Short()), err)
	case len(body) == 0 || (body[0] != flagRaw && body[0] != flagZstd):
		return openFailed(fmt.Sprintf("blob %s in pack %s", e.ID.Short(), e.Pack.Short()), errors.New("bad body flag"))
	case body[0] == flagRaw && len(body)-1 != int(e.RawLength):
		return fmt.Errorf("blob %s in pack %s: %w: %d bytes, index says %d", e.ID.Short(), e.Pack.Short(), ErrObjectCorrupted, len(body)-1, e.RawLength)
	case body[0] == flagZstd:
		// The copy's pack header gets e.RawLength, so a wrong one must be
		// found here, not carried past the deletion of the pack whose header
		// still has the right one. The frames state their decoded size;
		// where it is not e.RawLength, or is not stated (klauspost's
		// encoder leaves it out of frames of a few bytes), the body is
		// decoded as a read would.
		if n, ok := compress.DecodedSize(body[1:]); !ok || n != int(e.RawLength) {
			_, err := r.decodeBody(e, body, dec)
			return err
		}
	}
	return nil
}

// copyFromOther stores blob e again, read from another pack than e.Pack
// (whose copy failed with cause) and sealed anew.
func (r *Repository) copyFromOther(ctx context.Context, e index.Entry, cause error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var dst []byte
	plain, err := r.fromOtherCopy(ctx, e, cause, &dst)
	if err != nil {
		return fmt.Errorf("blob %s of pack %s cannot be read from any pack holding it: %w", e.ID.Short(), e.Pack.Short(), err)
	}
	return r.saveAgain(ctx, e.Type, e.ID, plain)
}

// saveSealedAgain adds blob e, sealed, to an open pack although the index
// has it, unless this process is already storing it.
func (r *Repository) saveSealedAgain(ctx context.Context, e index.Entry, sealed []byte) error {
	if !r.packer.reserveAgain(e.ID) {
		return r.packer.failed()
	}
	if err := r.packer.add(ctx, e.Type, e.ID, len(sealed), int(e.RawLength), copied(sealed)); err != nil {
		r.packer.unreserve(e.ID)
		return err
	}
	r.Stats.NewBlobs.Add(1)
	r.Stats.RawBytes.Add(int64(e.RawLength))
	r.Stats.StoredBytes.Add(int64(len(sealed)))
	return nil
}

// saveAgain seals and stores data as blob bid of type t although the
// index has it.
func (r *Repository) saveAgain(ctx context.Context, t index.BlobType, bid id.ID, data []byte) error {
	body := packBody(r.codec, make([]byte, r.key.SealPrefix()), data)
	var ad [adBlobSize]byte
	sealed, err := r.key.SealInPlace(body, adBlob(&ad, t, bid))
	if err != nil {
		return fmt.Errorf("sealing %s blob %s: %w", t, bid.Short(), err)
	}
	return r.saveSealedAgain(ctx, index.Entry{ID: bid, Type: t, RawLength: uint32(len(data))}, sealed)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// ReadIndexObject reads, authenticates and decodes index object iid.
func (r *Repository) ReadIndexObject(ctx context.Context, iid id.ID) (*index.File, error) {
	plain, err := r.loadSealed(ctx, backend.IndexFile, iid)
	if err != nil {
		return nil, err
	}
	f, err := index.Decode(plain)
	if err != nil {
		return nil, fmt.Errorf("index/%s: %w: %v", iid, ErrObjectCorrupted, err)
	}
	return f, nil
}

// WriteIndexObject stores an index object listing packs, durably, and
// returns its ID. The packs' blobs must be in the in-memory index already
// or be added by the caller (prune writes what it read).
func (r *Repository) WriteIndexObject(ctx context.Context, packs []index.PackBlobs) (id.ID, error) {
	oid, err := r.saveSealed(ctx, backend.IndexFile, index.Encode(&index.File{Packs: packs}))
	if err != nil {
		return id.ID{}, fmt.Errorf("writing index: %w", err)
	}
	r.idxMu.Lock()
	r.loadedIndex[oid] = struct{}{}
	r.idxMu.Unlock()
	return oid, nil
}

// UnlistPacks takes packs out of the index objects this writer flushed
// (ReplaceIndexObject: the replacement is durable before the old object
// goes) and out of what it has yet to flush. It is for a writer that
// finds packs it stored gone: a prune deleted them before it indexed them
// (it was stopped for longer than two grace periods), and an index object
// listing them would let a later writer reuse blobs that are gone.
func (r *Repository) UnlistPacks(ctx context.Context, packs []id.ID) error {
	drop := make(map[id.ID]bool, len(packs))
	for _, p := range packs {
		drop[p] = true
	}
	r.idxMu.Lock()
	r.pendingIndex = slices.DeleteFunc(r.pendingIndex, func(p index.PackBlobs) bool { return drop[p.Pack] })
	own := slices.Collect(maps.Keys(r.wroteIndex))
	r.idxMu.Unlock()
	for _, oid := range own {
		nid, err := r.ReplaceIndexObject(ctx, oid, func(p id.ID) bool { return drop[p] })
		if err != nil {
			return fmt.Errorf("taking packs that are gone out of the index: %w", err)
		}
		if nid == oid {
			continue
		}
		r.idxMu.Lock()
		delete(r.wroteIndex, oid)
		if !nid.IsNull() {
			r.wroteIndex[nid] = struct{}{}
		}
		r.idxMu.Unlock()
	}
	return nil
}

// ReplaceIndexObject supersedes index object iid by one that lists its
// packs except those drop says to leave out: the new object (none when no
// pack is left) is durable before iid is removed, so a crash in between
// leaves a pack listed twice, never a pack listed nowhere. A missing iid
// (replaced by a concurrent run) is not an error. It returns the new
// object's ID, or the zero ID when none was written.
func (r *Repository) ReplaceIndexObject(ctx context.Context, iid id.ID, drop func(id.ID) bool) (id.ID, error) {
	f, err := r.ReadIndexObject(ctx, iid)
	if errors.Is(err, fs.ErrNotExist) {
		return id.ID{}, nil
	}
	if err != nil {
		return id.ID{}, err
	}
	var keep []index.PackBlobs
	for _, p := range f.Packs {
		if !drop(p.Pack) {
			keep = append(keep, p)
		}
	}
	if len(keep) == len(f.Packs) {
		return iid, nil // lists none of them
	}
	var nid id.ID
	if len(keep) > 0 {
		if nid, err = r.WriteIndexObject(ctx, keep); err != nil {
			return id.ID{}, err
		}
	}
	h := backend.Handle{Type: backend.IndexFile, Name: iid.String()}
	if err := r.be.Remove(ctx, h); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nid, fmt.Errorf("removing %s (replaced by index/%s): %w", h, nid, err)
	}
	r.idxMu.Lock()
	delete(r.loadedIndex, iid)
	r.idxMu.Unlock()
	return nid, nil
}
