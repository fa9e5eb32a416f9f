package repository

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/compress"
	"github.com/nestguard/nestguard/internal/directio"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// SaveStats counts what SaveBlob added to the repository. NewBlobs,
// RawBytes and StoredBytes count blobs when they are added to a pack, which
// is stored later (Flush): they are what a successful command stored.
// DurableBlobs and DurableBytes count them once their pack is stored, so
// after a failure they still say what arrived.
type SaveStats struct {
	NewBlobs     atomic.Int64
	RawBytes     atomic.Int64 // plaintext bytes of new blobs
	StoredBytes  atomic.Int64 // sealed bytes of new blobs
	DurableBlobs atomic.Int64 // new blobs in packs stored
	DurableBytes atomic.Int64 // their sealed bytes
	// Packs and PackBytes count the packs stored durably so far: what an
	// interrupted backup leaves for the next one to reuse.
	Packs     atomic.Int64
	PackBytes atomic.Int64
}

// MaxBlobSize bounds a single blob; the chunker's maximum is 8 MiB, tree
// objects of huge directories are the other large blobs.
const MaxBlobSize = 64 << 20

// sealBufs keeps the buffers blobs are sealed into from one saveBlob to
// the next. A sync.Pool lost them at every collection (a backup of a
// large file collects about ten times a second), and each new buffer was
// grown by the seal and faulted in again: 220 MB allocated for a 4 GiB
// file, and twice the collections.
type sealBufs chan []byte

const (
	// sealBufStep rounds up a new buffer's capacity: a blob of 1 MiB
	// (the average chunk) sealed fits in 2 MiB.
	sealBufStep = 1 << 20
	// maxPooledBuf bounds the buffers kept: one that held one of the
	// rare chunks near the 8 MiB maximum is not kept for the next one.
	maxPooledBuf = 4 << 20
)

func newSealBufs() sealBufs { return make(sealBufs, 2*Workers()+4) }

// get returns an empty buffer of at least need bytes of capacity.
func (s sealBufs) get(need int) []byte {
	select {
	case b := <-s:
		if cap(b) >= need {
			return b[:0]
		}
	default:
	}
	return make([]byte, 0, (need+sealBufStep)&^(sealBufStep-1))
}

// release drops the buffers kept (Repository.Close), up to 4 MiB each:
// nothing should hold them once the repository is closed.
func (s sealBufs) release() {
	for {
		select {
		case <-s:
		default:
			return
		}
	}
}

// put keeps b for a later get unless it grew past maxPooledBuf or enough
// are kept.
func (s sealBufs) put(b []byte) {
	if cap(b) > maxPooledBuf {
		return
	}
	select {
	case s <- b[:0]:
	default:
	}
}

// skip reads and drops n bytes of rd through buf, returning buf (grown to
// at least 1 MiB): io.Discard reads 8 KiB at a time, a system call each
// on a local pack, and a restore reads through every tree blob between
// the data blobs it needs.
func skip(rd io.Reader, n int64, buf []byte) ([]byte, error) {
	if cap(buf) < 1<<20 {
		buf = make([]byte, 1<<20)
	}
	room := buf[:cap(buf)]
	for n > 0 {
		m := min(n, int64(len(room)))
		if _, err := io.ReadFull(rd, room[:m]); err != nil {
			return buf, err
		}
		n -= m
	}
	return buf, nil
}

// SaveBlob stores data as a blob of type t unless the repository already
// holds it. It returns the blob's ID and whether it was already known.
func (r *Repository) SaveBlob(ctx context.Context, t index.BlobType, data []byte) (id.ID, bool, error) {
	bid := r.blobID(data)
	known, err := r.SaveBlobWithID(ctx, t, bid, data)
	return bid, known, err
}

// BlobID returns the ID data has as a blob of this repository: the one
// SaveBlob names it by (a keyed hash, see the config's blob ID algorithm).
func (r *Repository) BlobID(data []byte) id.ID { return r.blobID(data) }

// SaveBlobFrom is SaveBlobWithID for data with a byte of room before it:
// buf[0] is lent, buf[1:] is the data, and bid must be BlobID(buf[1:]).
// A blob stored raw (not worth compressing) is then sealed straight out
// of buf, its flag byte written into buf[0], instead of being copied into
// a buffer of its own first: that copy was 8% of the CPU time of a backup
// of a large incompressible file. The data is not changed.
func (r *Repository) SaveBlobFrom(ctx context.Context, t index.BlobType, bid id.ID, buf []byte) (bool, error) {
	return r.saveBlob(ctx, t, bid, buf[1:], buf)
}

// SaveBlobWithID is SaveBlob for a caller that already computed the ID.
func (r *Repository) SaveBlobWithID(ctx context.Context, t index.BlobType, bid id.ID, data []byte) (bool, error) {
	return r.saveBlob(ctx, t, bid, data, nil)
}

// saveBlob stores data as blob bid; from, if not nil, is data with a byte
// of room before it (SaveBlobFrom).
func (r *Repository) saveBlob(ctx context.Context, t index.BlobType, bid id.ID, data, from []byte) (bool, error) {
	if len(data) > MaxBlobSize {
		return false, fmt.Errorf("blob of %d bytes exceeds the %d byte limit", len(data), MaxBlobSize)
	}
	if !r.packer.reserve(bid) {
		return true, r.packer.failed()
	}
	buf := r.sealBufs.get(r.sealedRaw(len(data)))
	defer r.sealBufs.put(buf)
	var ad [adBlobSize]byte
	adb := adBlob(&ad, t, bid)
	// The flagged body: compressed into buf after room for the nonce (or
	// salt), or raw with room before the data, or raw copied into buf.
	prefix := r.key.SealPrefix()
	body, compressed := compressedBody(r.codec, buf[:prefix], data)
	plain := body[prefix:]
	switch {
	case compressed:
	case from != nil:
		from[0] = flagRaw
		plain = from
	default:
		body = append(append(body, flagRaw), data...)
		plain = body[prefix:]
	}
	n := len(plain) + r.key.Overhead()
	// Sealed straight into the pack where it lends its memory, else over
	// itself in buf, or out of from into buf.
	seal := func(room []byte) (sealed []byte, err error) {
		switch {
		case room != nil:
			sealed, err = r.key.Seal(room[:0], plain, adb)
		case compressed || from == nil:
			sealed, err = r.key.SealInPlace(body, adb)
		default:
			sealed, err = r.key.Seal(buf[:0], from, adb)
		}
		if err != nil {
			return nil, fmt.Errorf("sealing %s blob %s: %w", t, bid.Short(), err)
		}
		return sealed, nil
	}
	if err := r.packer.add(ctx, t, bid, n, len(data), seal); err != nil {
		r.packer.unreserve(bid)
		return false, err
	}
	r.Stats.NewBlobs.Add(1)
	r.Stats.RawBytes.Add(int64(len(data)))
	r.Stats.StoredBytes.Add(int64(n))
	return false, nil
}

// packBody appends the flagged form of data to dst: compressed with c when
// that is worth it, else raw (c nil: compression off). Blobs, objects and
// named objects all use it, each with its codec.
func packBody(c *compress.Codec, dst, data []byte) []byte {
	if out, ok := compressedBody(c, dst, data); ok {
		return out
	}
	return append(append(dst, flagRaw), data...)
}

// compressedBody appends the compressed form of data, flagged, to dst if
// that is worth it (and c is not nil); else it returns dst's memory at
// its length and false.
func compressedBody(c *compress.Codec, dst, data []byte) ([]byte, bool) {
	if c != nil {
		if out, ok := c.Compress(append(dst, flagZstd), data); ok {
			return out, true
		}
	}
	return dst, false
}

// WaitUploads waits until the packs already handed to an upload are
// stored or have failed. It writes neither the open packs nor the index: a
// writer that was interrupted calls it so that what it reports stored
// (Stats.Packs) is all there will be.
func (r *Repository) WaitUploads() { r.packer.wg.Wait() }

// Flush writes the open packs and the pending index. Blobs saved before
// Flush returns are durable and indexed.
func (r *Repository) Flush(ctx context.Context) error {
	if err := r.packer.flush(ctx); err != nil {
		return err
	}
	return r.flushIndex(ctx)
}

// LoadBlob reads, authenticates, decompresses and verifies blob bid and
// returns its plaintext, decompressed into dst's memory when dst has room.
// A blob stored in several packs is read from the next one when a copy is
// missing or damaged, with a warning naming the pack (see fromOtherCopy);
// it fails only when no copy reads.
func (r *Repository) LoadBlob(ctx context.Context, bid id.ID, dst []byte) ([]byte, error) {
	e, err := r.FindBlob(ctx, bid)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", bid.Short(), err)
	}
	plain, err := r.LoadBlobAt(ctx, e, &dst)
	if err != nil && ctx.Err() == nil {
		return r.fromOtherCopy(ctx, e, err, &dst)
	}
	return plain, err
}

// LoadBlobAt reads the blob at location e alone (one ranged read, no
// other copy tried), with OpenBlob's checks.
func (r *Repository) LoadBlobAt(ctx context.Context, e index.Entry, dst *[]byte) ([]byte, error) {
	sealed, err := r.readSealedAt(ctx, e)
	if err != nil {
		return nil, err
	}
	return r.OpenBlob(e, sealed, dst)
}

// readSealedAt reads the sealed bytes of the blob at location e.
func (r *Repository) readSealedAt(ctx context.Context, e index.Entry) ([]byte, error) {
	h := backend.Handle{Type: backend.PackFile, Name: e.Pack.String()}
	rd, err := r.be.Load(ctx, h, int64(e.Offset), int64(e.Length))
	if err != nil {
		return nil, fmt.Errorf("blob %s in pack %s: %w", e.ID.Short(), e.Pack.Short(), err)
	}
	defer rd.Close()
	sealed := make([]byte, e.Length)
	if _, err := io.ReadFull(rd, sealed); err != nil {
		return nil, fmt.Errorf("blob %s in pack %s: reading: %w", e.ID.Short(), e.Pack.Short(), err)
	}
	return sealed, nil
}

// fromOtherCopy reads blob bad.ID from the packs other than bad.Pack that
// hold it (two backups at once may both have stored it), after reading
// the copy at bad failed with cause. The first pack a copy fails in is
// named in a warning, once per pack: the blob is not lost, but the pack is
// damaged or missing and verify --read-data reports it. When no copy
// reads, the error names every pack tried (only cause when bad is the
// blob's one location).
func (r *Repository) fromOtherCopy(ctx context.Context, bad index.Entry, cause error, dst *[]byte) ([]byte, error) {
	errs := []error{cause}
	var failed []index.Entry
	for _, e := range r.idx.Locations(bad.ID) {
		if e.Pack == bad.Pack {
			continue
		}
		if ctx.Err() != nil {
			return nil, cause
		}
		plain, err := r.LoadBlobAt(ctx, e, dst)
		if err != nil {
			errs = append(errs, err)
			failed = append(failed, e)
			continue
		}
		r.warnBadCopy(bad, cause, e)
		for i, f := range failed {
			r.warnBadCopy(f, errs[i+1], e)
		}
		return plain, nil
	}
	if len(errs) == 1 {
		return nil, cause
	}
	return nil, errors.Join(errs...)
}

// warnBadCopy records, and warns about once per pack, that blob bad.ID
// could not be read from bad.Pack (err) and was read from good.Pack
// instead.
func (r *Repository) warnBadCopy(bad index.Entry, err error, good index.Entry) {
	if errors.Is(err, backend.ErrUnavailable) {
		// The storage did not answer for that pack: nothing is known
		// to be wrong with it.
		r.log.Warn("the storage did not answer for a pack: blobs read from another pack holding them",
			"pack", bad.Pack.String(), "blob", bad.ID.Short(), "read_from", good.Pack.String(), "err", err)
		return
	}
	d := DamagedCopy{Pack: bad.Pack, Blob: bad.ID, ReadFrom: good.Pack, Err: err}
	if _, seen := r.badCopies.LoadOrStore(bad.Pack, d); seen {
		return
	}
	r.log.Warn("pack damaged or missing: blobs read from another pack holding them; run 'nestguard verify --read-data'",
		"pack", bad.Pack.String(), "blob", bad.ID.Short(), "read_from", good.Pack.String(), "err", err)
}

// DamagedCopy is a copy of a blob that could not be read, while the copy
// in another pack could.
type DamagedCopy struct {
	Pack     id.ID // the pack the copy is in
	Blob     id.ID
	ReadFrom id.ID // the pack read instead
	Err      error
}

// DamagedCopies lists the packs reads fell back from since the repository
// was opened (LoadBlob, LoadPackBlobs), the first failure in each, sorted
// by pack. A check reports them: the blobs still read, but the packs are
// damaged or missing.
func (r *Repository) DamagedCopies() []DamagedCopy {
	var out []DamagedCopy
	r.badCopies.Range(func(_, v any) bool {
		out = append(out, v.(DamagedCopy))
		return true
	})
	slices.SortFunc(out, func(a, b DamagedCopy) int { return bytes.Compare(a.Pack[:], b.Pack[:]) })
	return out
}

// OpenBlob decrypts a sealed blob described by e and checks that its
// plaintext hashes to e.ID. sealed is decrypted in place (its contents are
// lost): a blob stored raw is returned as a subslice of it, a compressed one
// is decompressed into *dec, which grows as needed and can be reused for
// the next blob. Reading a blob then costs no allocation and no copy.
func (r *Repository) OpenBlob(e index.Entry, sealed []byte, dec *[]byte) ([]byte, error) {
	var ad [adBlobSize]byte
	body, err := r.key.OpenInPlace(sealed, adBlob(&ad, e.Type, e.ID))
	if err != nil {
		return nil, openFailed(fmt.Sprintf("blob %s in pack %s", e.ID.Short(), e.Pack.Short()), err)
	}
	return r.decodeBody(e, body, dec)
}

// decodeBody returns the plaintext of blob e from its opened body
// (OpenBlob), decompressed into *dec if it is compressed, and checks its
// length and that it hashes to e.ID.
func (r *Repository) decodeBody(e index.Entry, body []byte, dec *[]byte) ([]byte, error) {
	var plain []byte
	var err error
	switch {
	case len(body) > 0 && body[0] == flagRaw:
		plain = body[1:]
	case len(body) > 0 && body[0] == flagZstd:
		plain, err = r.dec.Decompress((*dec)[:0], body[1:], int(e.RawLength))
		if err == nil {
			*dec = plain
		}
	default:
		err = fmt.Errorf("bad body flag")
	}
	if err != nil {
		return nil, openFailed(fmt.Sprintf("blob %s in pack %s", e.ID.Short(), e.Pack.Short()), err)
	}
	if len(plain) != int(e.RawLength) {
		return nil, fmt.Errorf("blob %s in pack %s: %w: %d bytes, index says %d", e.ID.Short(), e.Pack.Short(), ErrObjectCorrupted, len(plain), e.RawLength)
	}
	got := r.blobID(plain)
	if subtle.ConstantTimeCompare(got[:], e.ID[:]) != 1 {
		return nil, fmt.Errorf("blob %s in pack %s: %w: content does not match its id", e.ID.Short(), e.Pack.Short(), ErrObjectCorrupted)
	}
	return plain, nil
}

// LoadPackBlobs reads the given blobs of one pack with a single ranged read
// and calls fn for each, in pack order, with its plaintext or an error.
// Blobs not yet damaged are delivered even when others are, and a blob
// that does not read from pid is read from another pack holding it, if
// any, as LoadBlob does. plain is only
// valid until fn returns: its memory holds the next blob.
func (r *Repository) LoadPackBlobs(ctx context.Context, pid id.ID, blobs []index.Entry, fn func(e index.Entry, plain []byte, err error) error) error {
	return r.LoadPackBlobsPlaced(ctx, pid, blobs, nil, fn)
}

// LoadPackBlobsPlaced is LoadPackBlobs that puts each blob's plaintext
// where place asks, if it can: place returns the offset within a page
// (0 to directio.Align-1) at which the plaintext should begin in memory,
// or -1 for anywhere. A restore asks for the position its file offset has
// in its page, so that the whole pages of the blob are written to the
// file directly from there (directio.Filler), not copied into aligned
// buffers first.
func (r *Repository) LoadPackBlobsPlaced(ctx context.Context, pid id.ID, blobs []index.Entry, place func(index.Entry) int, fn func(e index.Entry, plain []byte, err error) error) error {
	if len(blobs) == 0 {
		return nil
	}
	sortByOffset(blobs)
	start := int64(blobs[0].Offset)
	last := blobs[len(blobs)-1]
	end := int64(last.Offset) + int64(last.Length)
	// A blob that does not read from this pack is read from another one
	// holding it, if any (see fromOtherCopy).
	var other []byte
	deliver := func(e index.Entry, plain []byte, err error) error {
		if err != nil && ctx.Err() == nil {
			plain, err = r.fromOtherCopy(ctx, e, err, &other)
		}
		return fn(e, plain, err)
	}
	h := backend.Handle{Type: backend.PackFile, Name: pid.String()}
	rd, err := r.be.Load(ctx, h, start, end-start)
	if err != nil {
		err = fmt.Errorf("pack %s: %w", pid.Short(), err)
		for _, e := range blobs {
			if ferr := deliver(e, nil, err); ferr != nil {
				return ferr
			}
		}
		return nil
	}
	defer rd.Close()
	pos := start
	// Reused buffers outside the heap (see readBufs): a restore
	// allocated half its data's volume in them, and the collections and
	// page faults of fresh memory cost more than the copies they hold.
	sb, db := r.readBufs.get(), r.readBufs.get()
	defer func() { r.readBufs.put(sb); r.readBufs.put(db) }()
	room, decRoom := sb.Bytes(), db.Bytes()
	var readErr error
	for _, e := range blobs {
		if readErr == nil && int64(e.Offset) > pos {
			room, readErr = skip(rd, int64(e.Offset)-pos, room)
			pos = int64(e.Offset)
		}
		var sealed []byte
		if readErr == nil && int64(e.Offset) == pos {
			at := r.placeSealed(e, room, place)
			if cap(room) < at+int(e.Length) {
				room, at = make([]byte, e.Length), 0
			}
			sealed = room[at : at+int(e.Length)]
			_, readErr = io.ReadFull(rd, sealed)
			pos += int64(e.Length)
		}
		if readErr != nil {
			if ferr := deliver(e, nil, fmt.Errorf("pack %s: reading blob %s: %w", pid.Short(), e.ID.Short(), readErr)); ferr != nil {
				return ferr
			}
			continue
		}
		// A compressed blob is decompressed where place asks.
		dec := decRoom[placeAt(e, decRoom, place, 0):][:0]
		plain, err := r.OpenBlob(e, sealed, &dec)
		if cap(dec) > cap(decRoom) {
			decRoom = dec[:cap(dec)] // grown for a blob over readBufSize: kept for the next
		}
		if ferr := deliver(e, plain, err); ferr != nil {
			return ferr
		}
	}
	return nil
}

// sealedRaw is the length of a blob of n bytes stored raw: its flag byte
// and its data, sealed. A compressed blob is shorter.
func (r *Repository) sealedRaw(n int) int { return 1 + n + r.key.Overhead() }

// placeSealed returns where in room blob e is read so that its plaintext
// begins where place asks (LoadPackBlobsPlaced), if it is stored raw: its
// sealed length is then sealedRaw of its plaintext's. A compressed
// blob's plaintext is decompressed elsewhere.
func (r *Repository) placeSealed(e index.Entry, room []byte, place func(index.Entry) int) int {
	if int(e.Length) != r.sealedRaw(int(e.RawLength)) {
		return 0
	}
	return placeAt(e, room, place, r.key.SealPrefix()+1)
}

// placeAt returns the index into buf at which data that begins skip
// bytes before e's plaintext is put so that the plaintext begins where
// place asks: 0 without place, or when it says anywhere.
func placeAt(e index.Entry, buf []byte, place func(index.Entry) int, skip int) int {
	if place == nil {
		return 0
	}
	at := place(e)
	if at < 0 {
		return 0
	}
	return directio.Shift(buf, at-skip)
}
