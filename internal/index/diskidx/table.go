package diskidx

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// Table is an open index cache file: an index.Base. It is safe for
// concurrent use. It keeps in memory the fanout (4 bytes per 32 blobs),
// the pack table (36 bytes a pack, under 2 bytes a blob) and the names of
// its sources, all authenticated by the header's MAC as Open read them,
// and reads the records with pread: a lookup reads one fanout bucket,
// about 1.5 KB, and checks its tag. The file is not mapped, so however
// many lookups run, the process's resident memory does not grow with the
// file: what is hot stays in the kernel's page cache, which is
// reclaimable and not the process's.
//
// No record is used unless the tag of its bucket matched when it was
// read, so a file changed after Open (bit rot, or someone who can write
// to the cache directory) cannot make a blob look present or move it. A
// bucket that fails its tag, or an I/O error, makes the blobs looked up in
// it look unknown: a backup stores such a blob again (a duplicate, never
// a loss), a restore or check that needs it fails. The error is kept for
// Err; on the first tag failure the file is also moved aside (to its name
// with ".damaged" appended, so that the next Open finds none and the
// caller rebuilds it) and the function given to OnDamage is called, once.
type Table struct {
	f      *os.File
	h      *header
	s      *sealer
	bkey   []byte   // the key of the bucket tags
	fan    []uint32 // number of the first record of each bucket, and the record count
	packs  []id.ID  // in the order first seen
	byPack []uint32 // pack numbers by pack ID
	srcs   []id.ID

	bufs     sync.Pool // *bucketBuf
	err      atomic.Pointer[error]
	damaged  atomic.Pointer[error]
	onDamage atomic.Pointer[func(error)]

	dmu        sync.Mutex
	badBuckets map[uint64]bool // buckets that failed their tag or their read since Open
}

var _ index.Base = (*Table)(nil)

// bucketBuf is a bucket reader's scratch: room for a bucket and a MAC.
type bucketBuf struct {
	b   []byte
	mac *bucketMAC
}

// room returns bb's room for a bucket of n bytes of records and its tag.
func (bb *bucketBuf) room(n int) []byte {
	if cap(bb.b) < n+tagSize {
		bb.b = make([]byte, max(n+tagSize, 64*recordSize))
	}
	return bb.b[:n+tagSize]
}

// records returns the records of bucket b, read into buf (records, then
// tag), or a *tagError when the tag does not match them.
func (bb *bucketBuf) records(b uint64, buf []byte) ([]byte, error) {
	n := len(buf) - tagSize
	if !hmac.Equal(bb.mac.tag(b, buf[:n]), buf[n:]) {
		return nil, &tagError{b}
	}
	return buf[:n], nil
}

// tagError is a bucket that failed its tag.
type tagError struct{ b uint64 }

func (e *tagError) Error() string { return fmt.Sprintf("bucket %d failed authentication", e.b) }

// damageError is Err's error after a bucket failed its tag: what it is
// and what became of the file.
type damageError struct {
	path string
	b    uint64
	what string
}

func (e *damageError) Error() string {
	return fmt.Sprintf("index cache %s: bucket %d failed authentication: the file was damaged or changed after it was opened; %s", e.path, e.b, e.what)
}

func (e *damageError) Unwrap() error { return ErrDamaged }

// Open checks the index cache at path against its checksums and key (the
// key it was written under) and opens it. An error wrapping ErrDamaged
// means the file must be rebuilt; one wrapping fs.ErrNotExist that there
// is none. Checking reads the whole file once: the sections after the
// buckets, which it keeps in memory, against the header's MAC, then every
// bucket against its tag (HMAC-SHA-256: about 1.5 GB/s a core with
// SHA-NI, on up to 8 cores).
func Open(path string, key []byte) (_ *Table, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("index cache: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	hb := make([]byte, headerSize)
	if _, err := io.ReadFull(f, hb); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDamaged, path, err)
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if kc := keyCheck(key); subtle.ConstantTimeCompare(kc[:], h.keyCheck[:]) != 1 {
		return nil, fmt.Errorf("%w: %s was written under another key", ErrDamaged, path)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("index cache: %w", err)
	}
	if uint64(fi.Size()) != headerSize+h.bodyLen {
		return nil, fmt.Errorf("%w: %s is %d bytes, its header says %d", ErrDamaged, path, fi.Size(), headerSize+h.bodyLen)
	}
	s, err := newSealer(key, h.salt)
	if err != nil {
		return nil, err
	}
	t := &Table{f: f, h: h, s: s, bkey: bucketKey(key, h.salt)}
	// The sections after the buckets, decoded as read and MACed as read:
	// what is kept is what was authenticated, and they are not read again.
	tailOff := headerSize + int64(h.bucketsLen())
	mac := newMAC(key)
	br := bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(f, tailOff, headerSize+int64(h.bodyLen)-tailOff), mac), 1<<20)
	var u [4]byte
	readU32 := func(dst []uint32) error {
		for i := range dst {
			if _, err := io.ReadFull(br, u[:]); err != nil {
				return err
			}
			dst[i] = binary.LittleEndian.Uint32(u[:])
		}
		return nil
	}
	readIDs := func(dst []id.ID) error {
		for i := range dst {
			if _, err := io.ReadFull(br, dst[i][:]); err != nil {
				return err
			}
		}
		return nil
	}
	t.fan = make([]uint32, 1<<h.bits+1)
	t.packs = make([]id.ID, h.packs)
	t.byPack = make([]uint32, h.packs)
	t.srcs = make([]id.ID, h.sources)
	if err := errors.Join(readU32(t.fan), readIDs(t.packs), readU32(t.byPack), readIDs(t.srcs)); err != nil {
		return nil, fmt.Errorf("index cache: reading %s: %w", path, err)
	}
	mac.Write(hb[:macFrom])
	if !hmac.Equal(mac.Sum(nil), h.mac[:]) {
		return nil, fmt.Errorf("%w: %s: MAC mismatch", ErrDamaged, path)
	}
	if err := t.checkFanout(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := t.checkBuckets(); err != nil {
		if te := (*tagError)(nil); errors.As(err, &te) {
			return nil, fmt.Errorf("%w: %s: %v", ErrDamaged, path, err)
		}
		return nil, fmt.Errorf("index cache: reading %s: %w", path, err)
	}
	return t, nil
}

// checkFanout checks what a lookup relies on to stay in its bucket: the
// fanout ascends to the record count. (The MAC already matched: this
// guards against a writer's bug, not the disk.)
func (t *Table) checkFanout() error {
	var prev uint32
	for _, v := range t.fan {
		if v < prev || uint64(v) > t.h.records() {
			return fmt.Errorf("%w: fanout not ascending", ErrDamaged)
		}
		prev = v
	}
	if uint64(prev) != t.h.records() {
		return fmt.Errorf("%w: fanout ends at %d of %d records", ErrDamaged, prev, t.h.records())
	}
	for _, n := range t.byPack {
		if uint64(n) >= t.h.packs {
			return fmt.Errorf("%w: pack number out of range", ErrDamaged)
		}
	}
	return nil
}

// checkBuckets checks the tag of every bucket, the buckets split in
// ranges among up to 8 goroutines.
func (t *Table) checkBuckets() error {
	nb := uint64(1) << t.h.bits
	w := uint64(min(runtime.GOMAXPROCS(0), 8))
	errs := make([]error, w)
	var wg sync.WaitGroup
	for i := range w {
		wg.Go(func() {
			errs[i] = t.walk(nb*i/w, nb*(i+1)/w, func(uint64, uint64, []byte) bool { return true })
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// bucketOff is where bucket b starts in the file.
func (t *Table) bucketOff(b uint64) int64 {
	return headerSize + int64(t.fan[b])*recordSize + int64(b)*tagSize
}

// walk reads buckets b0 to b1-1 in order, checks each one's tag and calls
// fn with the bucket's number, the number of its first record and its
// records, until fn returns false. It returns a *tagError for a bucket
// that fails its tag, or the error reading the file.
func (t *Table) walk(b0, b1 uint64, fn func(b, first uint64, recs []byte) bool) error {
	if b0 >= b1 {
		return nil
	}
	off := t.bucketOff(b0)
	br := bufio.NewReaderSize(io.NewSectionReader(t.f, off, t.bucketOff(b1)-off), 1<<20)
	bb := &bucketBuf{mac: newBucketMAC(t.bkey)}
	for b := b0; b < b1; b++ {
		buf := bb.room(int(t.fan[b+1]-t.fan[b]) * recordSize)
		if _, err := io.ReadFull(br, buf); err != nil {
			return err
		}
		recs, err := bb.records(b, buf)
		if err != nil {
			return err
		}
		if !fn(b, uint64(t.fan[b]), recs) {
			return nil
		}
	}
	return nil
}

// Close closes the file. The Table must not be used afterwards; the
// Entries it returned are copies and stay valid.
func (t *Table) Close() error { return t.f.Close() }

// Path is the file's name, as given to Open.
func (t *Table) Path() string { return t.f.Name() }

// Err returns the error of the first bucket that failed its tag since
// Open, if any, else the first error reading the file, or nil. After
// either, some blobs may have looked unknown.
func (t *Table) Err() error {
	if p := t.damaged.Load(); p != nil {
		return *p
	}
	if p := t.err.Load(); p != nil {
		return *p
	}
	return nil
}

// OnDamage sets fn to be called once, with Err's error, when a bucket
// first fails its tag after Open (for a warning: a lookup does not log).
func (t *Table) OnDamage(fn func(error)) { t.onDamage.Store(&fn) }

func (t *Table) fail(err error) {
	err = fmt.Errorf("index cache %s: %w", t.f.Name(), err)
	t.err.CompareAndSwap(nil, &err)
}

// failed records err, from reading the file: an I/O error, or a bucket
// that failed its tag, the first of which moves the file aside (unless
// another process has replaced it already) so that the next Open finds
// none and the caller rebuilds it.
func (t *Table) failed(err error) {
	var te *tagError
	if !errors.As(err, &te) {
		t.fail(err)
		return
	}
	t.badBucket(te.b)
	e := &damageError{path: t.f.Name(), b: te.b, what: "delete it: the next run rebuilds it"}
	var ee error = e
	if !t.damaged.CompareAndSwap(nil, &ee) {
		return
	}
	cur, err1 := os.Stat(e.path)
	own, err2 := t.f.Stat()
	switch {
	case err1 != nil || err2 != nil || !os.SameFile(cur, own):
		e = &damageError{path: e.path, b: e.b, what: "it has been replaced or removed since"}
	case os.Rename(e.path, e.path+".damaged") == nil:
		e = &damageError{path: e.path, b: e.b, what: "it was moved to " + e.path + ".damaged (for inspection; delete it) and the next run rebuilds the cache"}
	}
	// A new variable: the one stored by the CompareAndSwap above may be
	// read by Err meanwhile (a data race found by a concurrent test).
	final := error(e)
	t.damaged.Store(&final)
	if fn := t.onDamage.Load(); fn != nil {
		(*fn)(final)
	}
}

// badBucket records that bucket b failed (DamagedBuckets).
func (t *Table) badBucket(b uint64) {
	t.dmu.Lock()
	defer t.dmu.Unlock()
	if t.badBuckets == nil {
		t.badBuckets = make(map[uint64]bool)
	}
	t.badBuckets[b] = true
}

// Bucket returns the number of the bucket that holds blob bid.
func (t *Table) Bucket(bid id.ID) uint64 { return bucketOf(bid[:], t.h.bits) }

// DamagedBuckets reads every bucket and returns, sorted, the numbers of
// those that failed since Open, this read included: their tag, or their
// read (an I/O error, a file cut short). Each is recorded as a lookup's
// failure is, for Err and OnDamage. A lookup finds nothing in them: a
// caller may find their blobs elsewhere (the index objects the table was
// built from, Sources). It reads bucket by bucket, so that one failure
// does not hide the buckets after it (a truncated file fails them all).
func (t *Table) DamagedBuckets() []uint64 {
	bb := t.getBuf()
	defer t.bufs.Put(bb)
	for b := range uint64(1) << t.h.bits {
		t.readBucket(b, bb)
	}
	t.dmu.Lock()
	defer t.dmu.Unlock()
	out := make([]uint64, 0, len(t.badBuckets))
	for b := range t.badBuckets {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}

// Sources returns the index objects the table was built from, sorted.
func (t *Table) Sources() []id.ID { return slices.Clone(t.srcs) }

// FileBytes is the size of the file.
func (t *Table) FileBytes() int64 { return int64(headerSize + t.h.bodyLen) }

// MemoryBytes is what the Table holds in memory: the fanout, the pack
// table and the source names.
func (t *Table) MemoryBytes() int {
	return len(t.fan)*4 + len(t.packs)*id.Size + len(t.byPack)*4 + len(t.srcs)*id.Size
}

func (t *Table) getBuf() *bucketBuf {
	if bb, _ := t.bufs.Get().(*bucketBuf); bb != nil {
		return bb
	}
	return &bucketBuf{mac: newBucketMAC(t.bkey)}
}

// readBucket reads bucket b into bb and returns its records, or false
// when it cannot be read or fails its tag (recorded for Err). An empty
// bucket, which the fanout tells, is not read.
func (t *Table) readBucket(b uint64, bb *bucketBuf) ([]byte, bool) {
	lo, hi := t.fan[b], t.fan[b+1]
	if lo == hi {
		return nil, true
	}
	buf := bb.room(int(hi-lo) * recordSize)
	if _, err := t.f.ReadAt(buf, t.bucketOff(b)); err != nil {
		t.badBucket(b)
		t.failed(err)
		return nil, false
	}
	recs, err := bb.records(b, buf)
	if err != nil {
		t.failed(err)
		return nil, false
	}
	return recs, true
}

// search reads the bucket of blob bid into bb and returns its records,
// the number of the bucket's first record, and the index among them of
// bid's first location, or -1.
func (t *Table) search(bid *id.ID, bb *bucketBuf) ([]byte, uint64, int) {
	b := bucketOf(bid[:], t.h.bits)
	recs, ok := t.readBucket(b, bb)
	if !ok {
		return nil, 0, -1
	}
	// The first record whose ID is not below bid: a blob's first location
	// comes first among its records.
	l, h := 0, len(recs)/recordSize
	for l < h {
		m := int(uint(l+h) >> 1)
		if bytes.Compare(recs[m*recordSize:m*recordSize+id.Size], bid[:]) < 0 {
			l = m + 1
		} else {
			h = m
		}
	}
	if l == len(recs)/recordSize || !bytes.Equal(recs[l*recordSize:l*recordSize+id.Size], bid[:]) {
		return recs, 0, -1
	}
	return recs, uint64(t.fan[b]), l
}

// open returns the location of record rec, number pos in the file.
func (t *Table) open(rec []byte, pos uint64) loc {
	var b [locSize]byte
	copy(b[:], rec[id.Size:recordSize])
	t.s.xor(b[:], pos)
	return getLoc(b[:])
}

// entry returns the Entry of blob bid at l, or false when its pack cannot
// be read.
func (t *Table) entry(bid id.ID, l loc) (index.Entry, bool) {
	e := index.Entry{ID: bid, Type: blobType(l.pack), Offset: l.offset, Length: l.length, RawLength: l.rawLength}
	n := uint64(l.pack & packMask)
	if n >= t.h.packs {
		t.fail(fmt.Errorf("%w: pack number %d of %d", ErrDamaged, n, t.h.packs))
		return e, false
	}
	e.Pack = t.packs[n]
	return e, true
}

// Len returns the number of distinct blobs.
func (t *Table) Len() int { return int(t.h.blobs) }

// Lookup returns the first location of blob bid.
func (t *Table) Lookup(bid id.ID) (index.Entry, bool) {
	bb := t.getBuf()
	defer t.bufs.Put(bb)
	recs, first, i := t.search(&bid, bb)
	if i < 0 {
		return index.Entry{}, false
	}
	return t.entry(bid, t.open(recs[i*recordSize:], first+uint64(i)))
}

// Has reports whether blob bid is known.
func (t *Table) Has(bid id.ID) bool {
	bb := t.getBuf()
	defer t.bufs.Put(bb)
	_, _, i := t.search(&bid, bb)
	return i >= 0
}

// AppendLocations appends every location of blob bid to es, the first one
// first.
func (t *Table) AppendLocations(es []index.Entry, bid id.ID) []index.Entry {
	bb := t.getBuf()
	defer t.bufs.Put(bb)
	recs, first, i := t.search(&bid, bb)
	if i < 0 {
		return es
	}
	for j := i; j < len(recs)/recordSize; j++ {
		r := recs[j*recordSize : (j+1)*recordSize]
		if !bytes.Equal(r[:id.Size], bid[:]) {
			break
		}
		if e, ok := t.entry(bid, t.open(r, first+uint64(j))); ok {
			es = append(es, e)
		}
	}
	return es
}

// each calls fn with every location of every blob, by blob ID, a blob's
// first location first, and whether it is that, until fn returns false,
// and reports whether it visited them all (not when the file could not be
// read or a bucket failed its tag: see Err).
func (t *Table) each(fn func(e index.Entry, first bool) bool) bool {
	all := true
	err := t.walk(0, 1<<t.h.bits, func(_, pos uint64, recs []byte) bool {
		for j := 0; j < len(recs)/recordSize; j++ {
			r := recs[j*recordSize : (j+1)*recordSize]
			first := j == 0 || !bytes.Equal(r[:id.Size], recs[(j-1)*recordSize:(j-1)*recordSize+id.Size])
			e, ok := t.entry(id.ID(r[:id.Size]), t.open(r, pos+uint64(j)))
			if !ok || !fn(e, first) {
				all = false
				return false
			}
		}
		return true
	})
	if err != nil {
		t.failed(err)
		return false
	}
	return all
}

// Each calls fn with the first location of every blob, by blob ID, until
// fn returns false, and reports whether it visited them all (not when the
// file could not be read: see Err).
func (t *Table) Each(fn func(index.Entry) bool) bool {
	return t.each(func(e index.Entry, first bool) bool { return !first || fn(e) })
}

// EachLocation calls fn with every location of every blob, by blob ID, a
// blob's first location first, until fn returns false, and reports
// whether it visited them all (not when the file could not be read).
func (t *Table) EachLocation(fn func(index.Entry) bool) bool {
	return t.each(func(e index.Entry, _ bool) bool { return fn(e) })
}

// Packs returns every distinct pack, in the order first seen.
func (t *Table) Packs() []id.ID { return slices.Clone(t.packs) }

// HasPack reports whether pack p holds a blob of the table.
func (t *Table) HasPack(p id.ID) bool {
	_, ok := slices.BinarySearchFunc(t.byPack, p, func(n uint32, p id.ID) int { return bytes.Compare(t.packs[n][:], p[:]) })
	return ok
}
