package copier

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/pg"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

const expirySystem = 7301234567890123456

// segName is the name of segment no of timeline 1.
func segName(no uint64) string {
	return pgmeta.SegmentOf(pgmeta.LSN(no*uint64(pgmeta.DefaultSegmentSize)), 1, pgmeta.DefaultSegmentSize)
}

// walPage is the first page of segment no of timeline 1 of the test's
// system: its long header, all that verify's archive check reads.
func walPage(no uint64) []byte {
	page := make([]byte, 8192)
	le := binary.LittleEndian
	le.PutUint16(page[0:], 0xD110) // PostgreSQL 15
	le.PutUint16(page[2:], 0x0002) // XLP_LONG_HEADER
	le.PutUint32(page[4:], 1)
	le.PutUint64(page[8:], no*uint64(pgmeta.DefaultSegmentSize))
	le.PutUint64(page[24:], expirySystem)
	le.PutUint32(page[32:], uint32(pgmeta.DefaultSegmentSize))
	le.PutUint32(page[36:], 8192)
	return page
}

// baseBackup is a postgres snapshot of the test's system, reusing base's
// tree, that starts and stops in segment no.
func baseBackup(t *testing.T, r *repository.Repository, base *snapshot.Snapshot, no uint64, at time.Time) {
	t.Helper()
	ctx := context.Background()
	ctl := savePGControl(t, r)
	start := pgmeta.LSN(no*uint64(pgmeta.DefaultSegmentSize) + 0x28)
	bi := pgmeta.BackupInfo{SystemID: expirySystem, ServerVersion: 150000, Timeline: 1, StartLSN: start, StopLSN: start + 0x1000,
		StartWAL: segName(no), StopWAL: segName(no), StartTime: at.Add(-time.Second), StopTime: at,
		WALSegmentSize: pgmeta.DefaultSegmentSize, BlockSize: 8192, PGControl: ctl, DatabaseSize: 1 << 30}
	extra, err := json.Marshal(bi)
	if err != nil {
		t.Fatal(err)
	}
	sn := *base
	sn.Kind, sn.Parent, sn.Time, sn.Extra = snapshot.KindPostgres, nil, at, extra
	if err := snapshot.Save(ctx, r, &sn); err != nil {
		t.Fatal(err)
	}
}

// archiveDamage is what verify's archive check reports of r, an hour
// from now: every gap has settled.
func archiveDamage(t *testing.T, r *repository.Repository) []pg.ArchiveProblem {
	t.Helper()
	st, err := pg.Status(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	st.Now = time.Now().Add(time.Hour)
	ds, err := st.ArchiveDamage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// expirySource returns a source repository holding segments 1 to 20 of
// the test's system and base backups starting in segments 3, 8 and 14,
// an empty destination, and their backends.
func expirySource(t *testing.T) (srcBe, dstBe *mem.Backend, src, dst *repository.Repository) {
	t.Helper()
	ctx := context.Background()
	srcBe, dstBe = mem.New(), mem.New()
	src, dst = repotest.New(t, repotest.Backend(srcBe)), repotest.New(t, repotest.Backend(dstBe))
	dir := t.TempDir()
	writeFiles(t, dir, 1, 2, 1000)
	base := backup(t, src, dir)
	for no := uint64(1); no <= 20; no++ {
		if err := src.SaveNamed(ctx, backend.WALFile, segName(no), walPage(no)); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	for _, no := range []uint64{3, 8, 14} {
		baseBackup(t, src, base, no, t0.Add(time.Duration(no)*time.Minute))
	}
	return srcBe, dstBe, src, dst
}

// TestCopyExpiry: a repository whose prune expired WAL between an
// archive-only base backup and its PITR window's anchor, recording the
// boundary, is copied; the copy's verify reports none of that WAL (it
// would without the boundary: inside the archive-only backup's window),
// and reports a segment lost in the copy after the boundary.
func TestCopyExpiry(t *testing.T) {
	ctx := context.Background()
	srcBe, dstBe, src, dst := expirySource(t)
	// The prune: the boundary first, then the WAL between the
	// archive-only backup and the anchor.
	if _, err := walexpiry.Save(ctx, src, time.Now(), []walexpiry.Boundary{{SystemID: expirySystem, From: segName(8)}}); err != nil {
		t.Fatal(err)
	}
	for no := uint64(4); no < 8; no++ {
		if err := srcBe.Remove(ctx, backend.Handle{Type: backend.WALFile, Name: segName(no)}); err != nil {
			t.Fatal(err)
		}
	}
	if ds := archiveDamage(t, src); len(ds) != 0 {
		t.Fatalf("the source's archive check after the prune: %+v", ds)
	}

	c, err := New(src, dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, nil, true, nil); err != nil {
		t.Fatal(err)
	}
	_, floors, damaged, err := walexpiry.Records(ctx, dst)
	if err != nil || len(damaged) != 0 || floors[expirySystem] != segName(8) {
		t.Fatalf("the copy's WAL expiry boundaries: %v %v %v", floors, damaged, err)
	}
	if ds := archiveDamage(t, dst); len(ds) != 0 {
		t.Errorf("the copy's archive check: %+v", ds)
	}
	// Copying again writes no other record.
	if _, err := c.Run(ctx, nil, true, nil); err != nil {
		t.Fatal(err)
	}
	if recs, _, _, err := walexpiry.Records(ctx, dst); err != nil || len(recs) != 1 {
		t.Errorf("after a second copy, %d WAL expiry records (%v), want 1", len(recs), err)
	}

	// A segment lost in the copy, inside the anchor's window, after the
	// boundary, before the newest base backup: reported.
	if err := dstBe.Remove(ctx, backend.Handle{Type: backend.WALFile, Name: segName(11)}); err != nil {
		t.Fatal(err)
	}
	ds := archiveDamage(t, dst)
	var got []string
	for _, d := range ds {
		got = append(got, d.Object)
	}
	if !slices.Equal(got, []string{"wal/" + segName(11)}) || !strings.Contains(ds[0].Error, "inside the recoverable window of base backup") {
		t.Errorf("the copy's archive check with %s lost: %+v", segName(11), ds)
	}
}

// TestCopyExpiryDestinationKeepsMore: a destination copied before the
// source's prune holds the WAL the source then expired (it keeps base
// backups longer: an off-site copy). Copying again must not bring the
// source's boundary, which would excuse the destination losing that WAL
// (found by review): the destination's verify still reports a segment
// lost inside its oldest base backup's window.
func TestCopyExpiryDestinationKeepsMore(t *testing.T) {
	ctx := context.Background()
	srcBe, dstBe, src, dst := expirySource(t)
	c, err := New(src, dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, nil, true, nil); err != nil {
		t.Fatal(err)
	}
	// The source's prune: boundary 8, the WAL from 4 to 7 removed.
	if _, err := walexpiry.Save(ctx, src, time.Now(), []walexpiry.Boundary{{SystemID: expirySystem, From: segName(8)}}); err != nil {
		t.Fatal(err)
	}
	for no := uint64(4); no < 8; no++ {
		if err := srcBe.Remove(ctx, backend.Handle{Type: backend.WALFile, Name: segName(no)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Run(ctx, nil, true, nil); err != nil {
		t.Fatal(err)
	}
	if recs, _, _, err := walexpiry.Records(ctx, dst); err != nil || len(recs) != 0 {
		t.Fatalf("the destination keeps the WAL the source expired, yet got %d WAL expiry records (%v)", len(recs), err)
	}
	if ds := archiveDamage(t, dst); len(ds) != 0 {
		t.Fatalf("the destination's archive check: %+v", ds)
	}
	if err := dstBe.Remove(ctx, backend.Handle{Type: backend.WALFile, Name: segName(5)}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range archiveDamage(t, dst) {
		got = append(got, d.Object)
	}
	if !slices.Equal(got, []string{"wal/" + segName(5)}) {
		t.Errorf("the destination's archive check with %s lost: %v", segName(5), got)
	}
}

// TestCopyExpiryRecordDamaged: a source expiry record that does not read
// is not copied, and the copy says so and fails once it has copied the
// rest, instead of leaving the destination's verify to report the WAL
// the record accounted for as lost with nothing said.
func TestCopyExpiryRecordDamaged(t *testing.T) {
	ctx := context.Background()
	srcBe, _, src, dst := expirySource(t)
	name := strings.Repeat("ab", 32)
	if err := srcBe.Save(ctx, backend.Handle{Type: backend.ExpiryFile, Name: name}, strings.NewReader("not sealed"), 10); err != nil {
		t.Fatal(err)
	}
	c, err := New(src, dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Run(ctx, nil, true, nil)
	if err == nil || !strings.Contains(err.Error(), "WAL expiry records of the source could not be read") || !strings.Contains(err.Error(), name[:8]) {
		t.Fatalf("copy with a damaged source expiry record: %v, want an error naming it", err)
	}
	if res == nil || len(res.UnreadableExpiry) != 1 || len(res.Copied) != 4 || res.WAL != 20 {
		t.Fatalf("copy with a damaged source expiry record: %+v, want the record named and the rest copied", res)
	}
	if recs, _, _, err := walexpiry.Records(ctx, dst); err != nil || len(recs) != 0 {
		t.Fatalf("the destination has %d expiry records (%v), want none", len(recs), err)
	}
}
