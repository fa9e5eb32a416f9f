package pg

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Reading WAL records, as far as the recovery window needs: which
// transactions committed or aborted when, and where restore points are.
// The layout is PostgreSQL's (access/xlogrecord.h, access/xlog_internal.h,
// access/xact.h), the same since PostgreSQL 10 except where noted.

const (
	walPageSize           = 8192 // XLOG_BLCKSZ
	shortPageHeaderBytes  = 24   // MAXALIGN(sizeof(XLogPageHeaderData))
	recordHeaderBytes     = 24   // SizeOfXLogRecord
	xlpFirstIsContRecord  = 0x0001
	maxRecordBytes        = 1 << 30 // XLogRecordMaxSize
	rmXLOG                = 0       // RM_XLOG_ID
	rmXact                = 1       // RM_XACT_ID
	xlogSwitch            = 0x40
	xlogRestorePoint      = 0x70
	xlogCheckpointShutdwn = 0x00
	xlogCheckpointOnline  = 0x10
	xlogEndOfRecovery     = 0x90
	xactOpMask            = 0x70
	xactCommit            = 0x00
	xactAbort             = 0x20
	xactCommitPrepared    = 0x30
	xactAbortPrepared     = 0x40
	xactHasInfo           = 0x80
	walMagicPG15          = 0xD110 // XLOG_PAGE_MAGIC of PostgreSQL 15: new full-page image flags
	walMagicPG18          = 0xD118
	maxFileNameLen        = 64 // MAXFNAMELEN: restore point names
	postgresEpochUnixSecs = 946684800
)

// errEndOfWAL ends a scan: the next record is not valid (the end of what
// was written, or a segment missing from the repository).
var errEndOfWAL = errors.New("end of WAL")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walRecord is one WAL record.
type walRecord struct {
	LSN   LSN // where it starts
	End   LSN // the byte after it
	XID   uint32
	Info  uint8
	RMID  uint8
	data  []byte // the whole record, header included
	magic uint16 // of its first page: the PostgreSQL version
}

// walReader reads records from consecutive segments.
type walReader struct {
	ctx     context.Context
	segSize uint64
	// load returns segment number no and the function that gives its
	// memory back, or an error (fs.ErrNotExist past the WAL available).
	// A segment's memory is given back when the next is loaded (records
	// are copied out of it) or by close.
	load func(ctx context.Context, no uint64) ([]byte, func(), error)
	// sysID, if not zero, is the system identifier every segment's
	// header must carry: WAL of another cluster is never taken for this
	// one's.
	sysID   uint64
	no      uint64
	buf     []byte
	release func() // buf's
	valid   bool
}

// close gives back the memory of the segment in hand.
func (r *walReader) close() {
	if r.release != nil {
		r.release()
	}
	r.buf, r.release, r.valid = nil, nil, false
}

func (r *walReader) segment(no uint64) ([]byte, error) {
	if r.valid && r.no == no {
		return r.buf, nil
	}
	r.close()
	b, release, err := r.load(r.ctx, no)
	if err != nil {
		return nil, err
	}
	if h, err := parseSegmentHeader(b); err == nil && r.sysID != 0 && h.SystemID != r.sysID {
		release()
		return nil, fmt.Errorf("WAL segment %d (at %s) belongs to cluster %d, not to cluster %d of the base backup: two clusters archive into this repository",
			no, h.PageAddr, h.SystemID, r.sysID)
	}
	r.no, r.buf, r.release, r.valid = no, b, release, true
	return b, nil
}

// walPage is the page holding a position, with its header checked.
type walPage struct {
	data   []byte
	magic  uint16
	info   uint16
	remLen uint32
	hdr    int
}

func (r *walReader) page(lsn LSN) (walPage, error) {
	seg, err := r.segment(uint64(lsn) / r.segSize)
	if err != nil {
		return walPage{}, err
	}
	off := uint64(lsn) % r.segSize / walPageSize * walPageSize
	if off+walPageSize > uint64(len(seg)) {
		return walPage{}, errEndOfWAL
	}
	d := seg[off : off+walPageSize]
	le := binary.LittleEndian
	p := walPage{data: d, magic: le.Uint16(d[0:]), info: le.Uint16(d[2:]), remLen: le.Uint32(d[16:]), hdr: shortPageHeaderBytes}
	if LSN(le.Uint64(d[8:])) != lsn/walPageSize*walPageSize {
		return walPage{}, errEndOfWAL // a recycled or never written page
	}
	if p.info&xlpLongHeader != 0 {
		p.hdr = longPageHeaderBytes
	}
	return p, nil
}

// read appends n bytes of record data from lsn on to dst, skipping the
// page headers of the pages the data continues on.
func (r *walReader) read(dst []byte, lsn LSN, n int) ([]byte, LSN, error) {
	for n > 0 {
		p, err := r.page(lsn)
		if err != nil {
			return nil, lsn, err
		}
		off := int(uint64(lsn) % walPageSize)
		if off == 0 {
			if p.info&xlpFirstIsContRecord == 0 {
				return nil, lsn, errEndOfWAL // the record was never finished
			}
			off = p.hdr
			lsn += LSN(p.hdr)
		}
		take := min(n, walPageSize-off)
		dst = append(dst, p.data[off:off+take]...)
		n -= take
		lsn += LSN(take)
	}
	return dst, lsn, nil
}

// firstRecord is the position of the first record that begins in the
// segment starting at lsn: after the continuation of a record from the
// previous segment.
func (r *walReader) firstRecord(lsn LSN) (LSN, error) {
	for pos := lsn; uint64(pos) < uint64(lsn)+r.segSize; pos += walPageSize {
		p, err := r.page(pos)
		if err != nil {
			return 0, err
		}
		if p.info&xlpFirstIsContRecord == 0 {
			return pos + LSN(p.hdr), nil
		}
		if rem := maxAlign(int(p.remLen)); rem < walPageSize-p.hdr {
			return pos + LSN(p.hdr+rem), nil
		}
	}
	return 0, errEndOfWAL
}

func maxAlign(n int) int { return (n + 7) &^ 7 }

// record reads the record at lsn; prev, if not zero, is the previous
// record's position, which the record must point back to.
func (r *walReader) record(lsn, prev LSN) (*walRecord, error) {
	if uint64(lsn)%walPageSize == 0 {
		p, err := r.page(lsn)
		if err != nil {
			return nil, err
		}
		if p.info&xlpFirstIsContRecord != 0 {
			return nil, errEndOfWAL
		}
		lsn += LSN(p.hdr)
	}
	p, err := r.page(lsn)
	if err != nil {
		return nil, err
	}
	hdr, pos, err := r.read(make([]byte, 0, 64), lsn, recordHeaderBytes)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	total := le.Uint32(hdr[0:])
	if total < recordHeaderBytes || total > maxRecordBytes {
		return nil, errEndOfWAL
	}
	if prev != 0 && LSN(le.Uint64(hdr[8:])) != prev {
		return nil, errEndOfWAL
	}
	data, end, err := r.read(hdr, pos, int(total)-recordHeaderBytes)
	if err != nil {
		return nil, err
	}
	crc := crc32.Update(0, castagnoli, data[recordHeaderBytes:])
	crc = crc32.Update(crc, castagnoli, data[:20])
	if crc != le.Uint32(data[20:]) {
		return nil, errEndOfWAL
	}
	return &walRecord{LSN: lsn, End: end, XID: le.Uint32(data[4:]), Info: data[16], RMID: data[17], data: data, magic: p.magic}, nil
}

// scan calls fn for each record from the first that begins in segment
// first on, until fn returns true or the WAL ends (errEndOfWAL, or the
// error of a segment that cannot be read).
func (r *walReader) scan(first uint64, fn func(*walRecord) bool) error {
	pos, err := r.firstRecord(LSN(first * r.segSize))
	if err != nil {
		return err
	}
	var prev LSN
	for {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		rec, err := r.record(pos, prev)
		if err != nil {
			return err
		}
		if fn(rec) {
			return nil
		}
		prev = rec.LSN
		if rec.RMID == rmXLOG && rec.Info&0xF0 == xlogSwitch {
			// The rest of the segment is unused: the next record starts
			// the next segment.
			pos = LSN((uint64(rec.End) + r.segSize - 1) / r.segSize * r.segSize)
			continue
		}
		pos = LSN(maxAlign(int(rec.End)))
	}
}

// mainData returns the record's main data, which follows its block
// references and their data.
func (rec *walRecord) mainData() ([]byte, bool) {
	d := rec.data[recordHeaderBytes:]
	le := binary.LittleEndian
	newImageFlags := rec.magic >= walMagicPG15
	blockData, i := 0, 0
	for i < len(d)-blockData {
		id := d[i]
		i++
		switch {
		case id == 255: // XLR_BLOCK_ID_DATA_SHORT
			if i+1 > len(d) {
				return nil, false
			}
			n := int(d[i])
			return tail(d, n)
		case id == 254: // XLR_BLOCK_ID_DATA_LONG
			if i+4 > len(d) {
				return nil, false
			}
			n := int(le.Uint32(d[i:]))
			return tail(d, n)
		case id == 253: // XLR_BLOCK_ID_ORIGIN
			i += 2
		case id == 252: // XLR_BLOCK_ID_TOPLEVEL_XID
			i += 4
		case id <= 32: // XLR_MAX_BLOCK_ID
			if i+3 > len(d) {
				return nil, false
			}
			fork := d[i]
			blockData += int(le.Uint16(d[i+1:]))
			i += 3
			if fork&0x10 != 0 { // BKPBLOCK_HAS_IMAGE
				if i+5 > len(d) {
					return nil, false
				}
				blockData += int(le.Uint16(d[i:]))
				info := d[i+4]
				i += 5
				compressed := info&0x02 != 0 // BKPIMAGE_IS_COMPRESSED before 15
				if newImageFlags {
					compressed = info&(0x04|0x08|0x10) != 0 // PGLZ, LZ4, ZSTD
				}
				if info&0x01 != 0 && compressed { // BKPIMAGE_HAS_HOLE
					i += 2
				}
			}
			if fork&0x80 == 0 { // not BKPBLOCK_SAME_REL
				i += 12
			}
			i += 4 // block number
		default:
			return nil, false
		}
	}
	return nil, true // no main data
}

func tail(d []byte, n int) ([]byte, bool) {
	if n > len(d) {
		return nil, false
	}
	return d[len(d)-n:], true
}

// pgTime converts a TimestampTz (microseconds since 2000-01-01 UTC).
func pgTime(us int64) time.Time {
	return time.Unix(postgresEpochUnixSecs, 0).Add(time.Duration(us) * time.Microsecond).UTC()
}

// xactEnd describes a commit or abort record.
type xactEnd struct {
	Commit bool
	Time   time.Time
	XID    uint32 // the top-level transaction id recovery_target_xid matches
}

// xact decodes a commit or abort record (prepared ones included).
func (rec *walRecord) xact() (xactEnd, bool) {
	if rec.RMID != rmXact {
		return xactEnd{}, false
	}
	op := rec.Info & xactOpMask
	if op != xactCommit && op != xactAbort && op != xactCommitPrepared && op != xactAbortPrepared {
		return xactEnd{}, false
	}
	d, ok := rec.mainData()
	if !ok || len(d) < 8 {
		return xactEnd{}, false
	}
	le := binary.LittleEndian
	x := xactEnd{Commit: op == xactCommit || op == xactCommitPrepared, Time: pgTime(int64(le.Uint64(d))), XID: rec.XID}
	if op == xactCommitPrepared || op == xactAbortPrepared {
		xid, ok := twoPhaseXID(d[8:], rec.Info, x.Commit, rec.magic)
		if !ok {
			return xactEnd{}, false
		}
		x.XID = xid
	}
	return x, true
}

// twoPhaseXID finds the prepared transaction's id in a COMMIT PREPARED or
// ABORT PREPARED record's data after its time (ParseCommitRecord,
// ParseAbortRecord).
func twoPhaseXID(d []byte, info uint8, commit bool, magic uint16) (uint32, bool) {
	if info&xactHasInfo == 0 || len(d) < 4 {
		return 0, false
	}
	le := binary.LittleEndian
	xinfo := le.Uint32(d)
	i := 4
	counted := func(size int) bool { // an int count, then count items
		if i+4 > len(d) {
			return false
		}
		n := int(int32(le.Uint32(d[i:])))
		if n < 0 {
			return false
		}
		i += 4 + n*size
		return i <= len(d)
	}
	if xinfo&(1<<0) != 0 { // XACT_XINFO_HAS_DBINFO
		i += 8
	}
	if xinfo&(1<<1) != 0 && !counted(4) { // subtransactions
		return 0, false
	}
	if xinfo&(1<<2) != 0 && !counted(12) { // relation files
		return 0, false
	}
	if magic >= walMagicPG15 && xinfo&(1<<8) != 0 { // dropped statistics (15+)
		size := 12
		if magic >= walMagicPG18 {
			size = 16 // the object id became 64 bits
		}
		if !counted(size) {
			return 0, false
		}
	}
	if commit && xinfo&(1<<3) != 0 && !counted(16) { // invalidations
		return 0, false
	}
	if xinfo&(1<<4) == 0 || i+4 > len(d) { // XACT_XINFO_HAS_TWOPHASE
		return 0, false
	}
	return le.Uint32(d[i:]), true
}

// timelineBegins decodes the record a promotion writes first on its new
// timeline: XLOG_END_OF_RECOVERY (end_time, then this and the previous
// timeline), or an end-of-recovery checkpoint (its redo, this and the
// previous timeline, ..., its time in seconds at offset 64), whose
// timeline differs from the previous one. It returns the new timeline and
// when it began, and whether that time is exact: a checkpoint's is whole
// seconds, and the start of its second is returned, so that a commit of
// the old timeline in that second counts as after the fork (the end of
// the second let commits made within it after a promotion pass the fork
// check, and a restore follow the new timeline without them: hostile
// test). A failover whose old primary committed in the same second
// before it is then refused, and asks for --timeline: the safe side.
func (rec *walRecord) timelineBegins() (tli uint32, at time.Time, exact, ok bool) {
	if rec.RMID != rmXLOG {
		return 0, time.Time{}, false, false
	}
	d, ok := rec.mainData()
	if !ok {
		return 0, time.Time{}, false, false
	}
	le := binary.LittleEndian
	switch rec.Info & 0xF0 {
	case xlogEndOfRecovery:
		if len(d) < 16 || le.Uint32(d[8:]) == le.Uint32(d[12:]) {
			return 0, time.Time{}, false, false
		}
		return le.Uint32(d[8:]), pgTime(int64(le.Uint64(d))), true, true
	case xlogCheckpointShutdwn, xlogCheckpointOnline:
		if len(d) < 72 || le.Uint32(d[8:]) == le.Uint32(d[12:]) {
			return 0, time.Time{}, false, false
		}
		return le.Uint32(d[8:]), time.Unix(int64(le.Uint64(d[64:])), 0).UTC(), false, true
	}
	return 0, time.Time{}, false, false
}

// restorePoint decodes a restore point record (pg_create_restore_point).
func (rec *walRecord) restorePoint() (name string, at time.Time, ok bool) {
	if rec.RMID != rmXLOG || rec.Info&0xF0 != xlogRestorePoint {
		return "", time.Time{}, false
	}
	d, ok := rec.mainData()
	if !ok || len(d) < 8+maxFileNameLen {
		return "", time.Time{}, false
	}
	n := d[8 : 8+maxFileNameLen]
	for i, c := range n {
		if c == 0 {
			n = n[:i]
			break
		}
	}
	return string(n), pgTime(int64(binary.LittleEndian.Uint64(d))), true
}
