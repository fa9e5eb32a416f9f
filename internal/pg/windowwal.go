package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/nestguard/nestguard/internal/hugemem"
)

// What the recovery window needs from the WAL records themselves: the
// last transaction recovery can replay, the first transaction that ended
// after a target time, and where a transaction ended or a restore point
// was made. Archive times bound when a segment's records were written,
// but recovery stops at records, so these read them.

// reader reads the records of path (consecutive segments, each from the
// timeline recovery takes it from) of cluster sysID, into memory from
// bufs; segments outside it do not exist. Its caller closes it.
func (s *StatusReport) reader(ctx context.Context, path []Segment, sysID uint64, bufs *hugemem.Pool) *walReader {
	var first uint64
	if len(path) > 0 {
		first = path[0].No
	}
	return &walReader{ctx: ctx, segSize: uint64(s.SegmentSize), sysID: sysID, load: func(ctx context.Context, no uint64) ([]byte, func(), error) {
		if len(path) == 0 || no < first || no-first >= uint64(len(path)) {
			return nil, nil, fs.ErrNotExist
		}
		name := path[no-first].Name(s.SegmentSize)
		b, release, err := loadWAL(ctx, s.repo, name, bufs)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("reading WAL segment %s: %w", name, err)
		}
		return b, release, err
	}}
}

// endOfScan tells the end of the readable WAL (nil) from a failure.
func endOfScan(err error) error {
	if err == nil || errors.Is(err, errEndOfWAL) || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// scanPath calls fn for the records of path from the first that begins in
// path[from] on, until fn returns true or the readable WAL ends.
func (s *StatusReport) scanPath(ctx context.Context, path []Segment, sysID uint64, from int, fn func(*walRecord) bool) error {
	if from >= len(path) {
		return nil
	}
	var bufs hugemem.Pool
	defer bufs.Close()
	r := s.reader(ctx, path, sysID, &bufs)
	defer r.close()
	return endOfScan(r.scan(path[from].No, fn))
}

// lastXact is the last commit or abort at or after floor in path: the
// end of what recovery along path can replay to, searched from the last
// segment backwards.
func (s *StatusReport) lastXact(ctx context.Context, path []Segment, sysID uint64, floor LSN) (*XactEnd, error) {
	segSize := uint64(s.SegmentSize)
	for i := len(path) - 1; i >= 0; i-- {
		end := LSN((path[i].No + 1) * segSize)
		if end <= floor {
			break
		}
		var last *XactEnd
		err := s.scanPath(ctx, path, sysID, i, func(rec *walRecord) bool {
			if rec.LSN >= end {
				return true
			}
			if x, ok := rec.xact(); ok && rec.LSN >= floor {
				last = &XactEnd{XID: x.XID, Committed: x.Commit, Time: x.Time, LSN: rec.LSN}
			}
			return false
		})
		if err != nil {
			return nil, err
		}
		if last != nil {
			return last, nil
		}
	}
	return nil, nil
}

// xactAfter is the first commit or abort at or after floor in path whose
// time is after t: where recovery to time t stops. The search starts at
// the first segment archived at or after t (earlier segments were closed
// before t, so their transactions ended before it), and, since archive
// and database clocks may differ, falls back to the last transaction.
func (s *StatusReport) xactAfter(ctx context.Context, path []Segment, sysID uint64, floor LSN, t time.Time) (*XactEnd, error) {
	from := len(path)
	for i, sg := range path {
		if !s.segs[sg.TLI][sg.No].Before(t) {
			from = i
			break
		}
	}
	var found *XactEnd
	err := s.scanPath(ctx, path, sysID, from, func(rec *walRecord) bool {
		if x, ok := rec.xact(); ok && rec.LSN >= floor && x.Time.After(t) {
			found = &XactEnd{XID: x.XID, Committed: x.Commit, Time: x.Time, LSN: rec.LSN}
			return true
		}
		return false
	})
	if err != nil || found != nil {
		return found, err
	}
	last, err := s.lastXact(ctx, path, sysID, floor)
	if err != nil || last == nil || !last.Time.After(t) {
		return nil, err
	}
	// Clock skew: a transaction after t in a segment archived before t.
	err = s.scanPath(ctx, path, sysID, 0, func(rec *walRecord) bool {
		if x, ok := rec.xact(); ok && rec.LSN >= floor && x.Time.After(t) {
			found = &XactEnd{XID: x.XID, Committed: x.Commit, Time: x.Time, LSN: rec.LSN}
			return true
		}
		return false
	})
	return found, err
}
