package pgmeta

import (
	"fmt"
	"strconv"
)

// WAL segment sizes PostgreSQL supports (initdb --wal-segsize): powers of
// two from 1 MiB to 1 GiB.
const (
	DefaultSegmentSize int64 = 16 << 20
	MinSegmentSize     int64 = 1 << 20
	MaxSegmentSize     int64 = 1 << 30
)

// ValidSegmentSize reports whether n is a WAL segment size PostgreSQL
// can be built with.
func ValidSegmentSize(n int64) bool {
	return n >= MinSegmentSize && n <= MaxSegmentSize && n&(n-1) == 0
}

// Segment identifies a WAL segment: a timeline and a segment number, the
// LSN divided by the segment size. Its file name is TTTTTTTTXXXXXXXXYYYYYYYY:
// timeline, then the number split into "log" (high 32 bits of the start
// LSN) and the segment within that 4 GiB, all in upper-case hex.
type Segment struct {
	TLI uint32
	No  uint64
}

// segmentsPerXLogID is how many segments one 4 GiB "log" holds.
func segmentsPerXLogID(segSize int64) uint64 { return 0x100000000 / uint64(segSize) }

func checkSegmentSize(segSize int64) error {
	if !ValidSegmentSize(segSize) {
		return fmt.Errorf("invalid WAL segment size %d: PostgreSQL uses powers of two from 1 MiB to 1 GiB", segSize)
	}
	return nil
}

// Name formats the segment's file name for segSize (which must be valid).
func (s Segment) Name(segSize int64) string {
	per := segmentsPerXLogID(segSize)
	return fmt.Sprintf("%08X%08X%08X", s.TLI, s.No/per, s.No%per)
}

// StartLSN is the position of the segment's first byte.
func (s Segment) StartLSN(segSize int64) LSN { return LSN(s.No * uint64(segSize)) }

// Next is the following segment on the same timeline.
func (s Segment) Next() Segment { return Segment{s.TLI, s.No + 1} }

// SegmentAt is the segment of timeline tli holding the byte at lsn.
func SegmentAt(lsn LSN, tli uint32, segSize int64) Segment {
	return Segment{tli, uint64(lsn) / uint64(segSize)}
}

// SegmentOf names the segment of timeline tli holding the byte at lsn.
// (For the end of a record, PostgreSQL's "previous segment" rule, pass
// lsn-1: a record ending exactly on a boundary lies in the earlier one.)
func SegmentOf(lsn LSN, tli uint32, segSize int64) string {
	return SegmentAt(lsn, tli, segSize).Name(segSize)
}

// ParseSegment reads a segment file name for segSize.
func ParseSegment(name string, segSize int64) (Segment, error) {
	if err := checkSegmentSize(segSize); err != nil {
		return Segment{}, err
	}
	if !IsSegment(name) {
		return Segment{}, fmt.Errorf("%q is not a WAL segment name (24 upper-case hex digits)", name)
	}
	tli, _ := strconv.ParseUint(name[0:8], 16, 32)
	log, _ := strconv.ParseUint(name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(name[16:24], 16, 32)
	per := segmentsPerXLogID(segSize)
	if tli == 0 {
		return Segment{}, fmt.Errorf("WAL segment %s: timeline 0 does not exist", name)
	}
	if seg >= per {
		return Segment{}, fmt.Errorf("WAL segment %s cannot exist with %d MiB segments (at most %d per log file): wrong segment size?",
			name, segSize>>20, per)
	}
	return Segment{uint32(tli), log*per + seg}, nil
}

// NextSegment names the segment after name on the same timeline.
func NextSegment(name string, segSize int64) (string, error) {
	s, err := ParseSegment(name, segSize)
	if err != nil {
		return "", err
	}
	return s.Next().Name(segSize), nil
}

// maxSegmentsBetween bounds SegmentsBetween, so that a damaged record
// cannot make it allocate without end: 16 TiB of 16 MiB segments.
const maxSegmentsBetween = 1 << 20

// SegmentsBetween lists the segments from first through last, which must
// be on one timeline and in order.
func SegmentsBetween(first, last string, segSize int64) ([]string, error) {
	a, err := ParseSegment(first, segSize)
	if err != nil {
		return nil, err
	}
	b, err := ParseSegment(last, segSize)
	if err != nil {
		return nil, err
	}
	if a.TLI != b.TLI {
		return nil, fmt.Errorf("WAL segments %s and %s are on different timelines", first, last)
	}
	if b.No < a.No {
		return nil, fmt.Errorf("WAL segment %s comes before %s", last, first)
	}
	if b.No-a.No >= maxSegmentsBetween {
		return nil, fmt.Errorf("WAL segments %s to %s: %d segments, more than the %d expected at most", first, last, b.No-a.No+1, maxSegmentsBetween)
	}
	out := make([]string, 0, b.No-a.No+1)
	for s := a; s.No <= b.No; s = s.Next() {
		out = append(out, s.Name(segSize))
	}
	return out, nil
}

// isHex reports whether s is all upper-case hex digits, as PostgreSQL
// writes (and only accepts) them in WAL file names.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// IsSegment reports whether name is a WAL segment file name.
func IsSegment(name string) bool { return len(name) == 24 && isHex(name) }

// IsHistory reports whether name is a timeline history file name
// (TTTTTTTT.history).
func IsHistory(name string) bool {
	return len(name) == 16 && isHex(name[:8]) && name[8:] == ".history"
}

// IsBackupHistory reports whether name is a backup history file name
// (segment.OOOOOOOO.backup, the offset of the backup start in it).
func IsBackupHistory(name string) bool {
	return len(name) == 40 && isHex(name[:24]) && name[24] == '.' && isHex(name[25:33]) && name[33:] == ".backup"
}

// IsPartial reports whether name is a partial segment: the last, unfinished
// segment of a timeline that a promotion ended (segment.partial).
func IsPartial(name string) bool {
	return len(name) == 32 && isHex(name[:24]) && name[24:] == ".partial"
}

// IsWALFileName reports whether PostgreSQL archives files of this name:
// segments, partial segments, history and backup history files.
func IsWALFileName(name string) bool {
	return IsSegment(name) || IsHistory(name) || IsBackupHistory(name) || IsPartial(name)
}

// HistoryFileName names the history file of timeline tli.
func HistoryFileName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// ParseHistoryFileName returns the timeline of a history file name.
func ParseHistoryFileName(name string) (uint32, error) {
	if !IsHistory(name) {
		return 0, fmt.Errorf("%q is not a timeline history file name (TTTTTTTT.history)", name)
	}
	tli, _ := strconv.ParseUint(name[:8], 16, 32)
	if tli == 0 {
		return 0, fmt.Errorf("%s: timeline 0 does not exist", name)
	}
	return uint32(tli), nil
}
