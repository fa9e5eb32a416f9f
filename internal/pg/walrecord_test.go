package pg

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/pgtest"
)

// The WAL reader finds, in a real cluster's WAL, the commits and aborts
// (with their transaction ids and times, prepared ones too) and the
// restore points, across segment switches.
func TestReadWALRecords(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"max_prepared_transactions": "5"}})
	c.Exec(t, "CREATE TABLE t (id int, v text)")
	before := time.Now().Add(-time.Second)
	first := c.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	var xids []uint32
	for i := range 3 {
		xid := c.QueryString(t, fmt.Sprintf("INSERT INTO t VALUES (%d, repeat('x', 3000)) RETURNING txid_current()", i))
		n, _ := strconv.ParseUint(xid, 10, 32)
		xids = append(xids, uint32(n))
		if i == 1 {
			c.SwitchWAL(t) // the next commit is in the next segment
		}
	}
	c.Exec(t, "SELECT pg_create_restore_point('before big')")
	// A large record spanning pages, and a prepared transaction.
	c.Exec(t, "INSERT INTO t SELECT g, repeat(md5(g::text), 100) FROM generate_series(1, 2000) g")
	c.Exec(t, "BEGIN; INSERT INTO t VALUES (-1, 'prepared'); PREPARE TRANSACTION 'p1'")
	pxid := c.QueryString(t, "SELECT transaction FROM pg_prepared_xacts WHERE gid = 'p1'")
	c.Exec(t, "COMMIT PREPARED 'p1'")
	c.SwitchWAL(t)
	after := time.Now().Add(time.Second)

	seg, err := pgmeta.ParseSegment(first, pgmeta.DefaultSegmentSize)
	if err != nil {
		t.Fatal(err)
	}
	r := &walReader{ctx: context.Background(), segSize: uint64(pgmeta.DefaultSegmentSize), load: func(_ context.Context, no uint64) ([]byte, func(), error) {
		b, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", Segment{TLI: seg.TLI, No: no}.Name(pgmeta.DefaultSegmentSize)))
		if os.IsNotExist(err) {
			return nil, nil, fs.ErrNotExist
		}
		return b, func() {}, err
	}}
	commits := map[uint32]time.Time{}
	var points []string
	records := 0
	err = r.scan(seg.No, func(rec *walRecord) bool {
		records++
		if x, ok := rec.xact(); ok && x.Commit {
			commits[x.XID] = x.Time
		}
		if name, _, ok := rec.restorePoint(); ok {
			points = append(points, name)
		}
		return false
	})
	t.Logf("%d records read, ended with %v", records, err)
	for _, x := range xids {
		at, ok := commits[x]
		if !ok || at.Before(before) || at.After(after) {
			t.Errorf("commit of %d: %v, %v", x, at, ok)
		}
	}
	n, _ := strconv.ParseUint(pxid, 10, 32)
	if _, ok := commits[uint32(n)]; !ok {
		t.Errorf("COMMIT PREPARED of %s not found", pxid)
	}
	if len(points) != 1 || points[0] != "before big" {
		t.Errorf("restore points %q", points)
	}
}

// Damaged or hostile WAL never panics the record decoder.
func FuzzWALRecordDecode(f *testing.F) {
	f.Add(fakeRecord(7, 0, xactCommit, rmXact, []byte{255, 8, 1, 2, 3, 4, 5, 6, 7, 8}), uint16(walMagicPG15))
	f.Add(fakeRecord(7, 0, xactCommitPrepared|xactHasInfo, rmXact, []byte{254, 20, 0, 0, 0}), uint16(0xD10D))
	f.Add(fakeRecord(0, 0, xlogRestorePoint, rmXLOG, []byte{0, 0x10, 1, 0, 0xff, 0xff}), uint16(walMagicPG18))
	f.Fuzz(func(t *testing.T, data []byte, magic uint16) {
		if len(data) < recordHeaderBytes {
			return
		}
		rec := &walRecord{data: data, Info: data[16], RMID: data[17], magic: magic}
		rec.mainData()
		rec.xact()
		rec.restorePoint()
	})
}

// A segment cut short, or pages that are not WAL, end a scan without a
// panic.
func TestWALReaderDamaged(t *testing.T) {
	good := fakeSegment(1, 3, time.Unix(1e9, 0), 42)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"short":     good[:100],
		"zeros":     make([]byte, walPageSize),
		"bad crc":   append(append([]byte{}, good[:50]...), append([]byte{good[50] ^ 1}, good[51:]...)...),
		"wrong seg": fakeSegment(1, 4, time.Unix(1e9, 0), 42),
	} {
		r := &walReader{ctx: context.Background(), segSize: uint64(pgmeta.DefaultSegmentSize), load: func(_ context.Context, no uint64) ([]byte, func(), error) {
			if no != 3 {
				return nil, nil, fs.ErrNotExist
			}
			return b, func() {}, nil
		}}
		n := 0
		err := r.scan(3, func(*walRecord) bool { n++; return false })
		if n != 0 || endOfScan(err) != nil {
			t.Errorf("%s: %d records, %v", name, n, err)
		}
	}
}

// BenchmarkScanSegment reads every record of full segments of pgbench WAL
// (what the window and the target checks cost per segment, besides
// loading it from the repository).
func BenchmarkScanSegment(b *testing.B) {
	c := pgtest.Start(b, pgtest.Options{})
	c.Pgbench(b, "-i", "-q", "-s", "2")
	first := c.QueryString(b, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Pgbench(b, "-n", "-T", "3")
	c.SwitchWAL(b)
	seg, err := pgmeta.ParseSegment(first, pgmeta.DefaultSegmentSize)
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", first))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	records := 0
	for b.Loop() {
		r := &walReader{ctx: context.Background(), segSize: uint64(pgmeta.DefaultSegmentSize), load: func(_ context.Context, no uint64) ([]byte, func(), error) {
			if no != seg.No {
				return nil, nil, fs.ErrNotExist
			}
			return data, func() {}, nil
		}}
		records = 0
		r.scan(seg.No, func(*walRecord) bool { records++; return false })
	}
	b.ReportMetric(float64(records), "records/segment")
}
