package pg

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// timedBackend reports the archive times a test chooses.
type timedBackend struct {
	backend.Backend
	times map[string]time.Time
}

func (b *timedBackend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	return b.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		if mt, ok := b.times[fi.Name]; ok && t == backend.WALFile {
			fi.ModTime = mt
		}
		return fn(fi)
	})
}

// walWorld is a repository with WAL and base backups at chosen times.
type walWorld struct {
	t    *testing.T
	ctx  context.Context
	repo *repository.Repository
	be   *timedBackend
	t0   time.Time
	// sysID is the system identifier of the backups recorded (0: 7, the
	// segments').
	sysID uint64
}

func newWALWorld(t *testing.T) *walWorld {
	t.Helper()
	be := &timedBackend{Backend: mem.New(), times: map[string]time.Time{}}
	kdf := crypto.FastKDFParamsForTests()
	repo, err := repository.Init(context.Background(), be, []byte("pw"), repository.InitOptions{Options: repository.Options{KDF: &kdf}})
	if err != nil {
		t.Fatal(err)
	}
	return &walWorld{t: t, ctx: context.Background(), repo: repo, be: be, t0: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

// at is t0 plus minutes.
func (w *walWorld) at(min float64) time.Time {
	return w.t0.Add(time.Duration(min * float64(time.Minute)))
}

// segments archives segments first..last of timeline tli, segment n at
// minute n (plus offset), each holding the commit of transaction 1000+n
// 20 seconds before it was archived.
func (w *walWorld) segments(tli uint32, first, last uint64, offset float64) {
	w.t.Helper()
	for no := first; no <= last; no++ {
		name := Segment{TLI: tli, No: no}.Name(pgmeta.DefaultSegmentSize)
		at := w.at(float64(no) + offset)
		if err := w.repo.SaveNamed(w.ctx, backend.WALFile, name, fakeSegment(tli, no, at.Add(-20*time.Second), uint32(1000+no))); err != nil {
			w.t.Fatal(err)
		}
		w.be.times[name] = at
	}
}

// fakeSegment is the first page of a WAL segment (all the reader needs)
// holding a commit record and a WAL switch: the next segment's first
// record follows the switch.
func fakeSegment(tli uint32, no uint64, commit time.Time, xid uint32) []byte {
	start := seg(no)
	page := make([]byte, walPageSize)
	le := binary.LittleEndian
	le.PutUint16(page[0:], walMagicPG15)
	le.PutUint16(page[2:], xlpLongHeader)
	le.PutUint32(page[4:], tli)
	le.PutUint64(page[8:], uint64(start))
	le.PutUint64(page[24:], 7)
	le.PutUint32(page[32:], uint32(pgmeta.DefaultSegmentSize))
	le.PutUint32(page[36:], walPageSize)
	// prev: the previous segment's switch record (at offset 80).
	prev := LSN(0)
	if no > 0 {
		prev = seg(no-1) + 80
	}
	main := le.AppendUint64(nil, uint64(commit.Sub(time.Unix(postgresEpochUnixSecs, 0)).Microseconds()))
	commitRec := fakeRecord(xid, prev, xactCommit, rmXact, append([]byte{255, byte(len(main))}, main...))
	copy(page[40:], commitRec)
	copy(page[80:], fakeRecord(0, start+40, xlogSwitch, rmXLOG, nil))
	return page
}

func fakeRecord(xid uint32, prev LSN, info, rmid uint8, body []byte) []byte {
	le := binary.LittleEndian
	rec := make([]byte, recordHeaderBytes, recordHeaderBytes+len(body))
	le.PutUint32(rec[0:], uint32(recordHeaderBytes+len(body)))
	le.PutUint32(rec[4:], xid)
	le.PutUint64(rec[8:], uint64(prev))
	rec[16], rec[17] = info, rmid
	rec = append(rec, body...)
	crc := crc32.Update(0, castagnoli, rec[recordHeaderBytes:])
	crc = crc32.Update(crc, castagnoli, rec[:20])
	le.PutUint32(rec[20:], crc)
	return rec
}

func (w *walWorld) history(tli uint32, content string) {
	w.t.Helper()
	if err := w.repo.SaveNamed(w.ctx, backend.WALFile, pgmeta.HistoryFileName(tli), []byte(content)); err != nil {
		w.t.Fatal(err)
	}
}

// backup records a base backup on tli from start to stop LSN, ending at
// minute stopMin.
func (w *walWorld) backup(tli uint32, start, stop LSN, stopMin float64) *snapshot.Snapshot {
	w.t.Helper()
	sysID := w.sysID
	if sysID == 0 {
		sysID = 7 // as fakeSegment's headers
	}
	bi := BackupInfo{
		SystemID: sysID, Timeline: tli, StartLSN: start, StopLSN: stop,
		StartWAL: pgmeta.SegmentOf(start, tli, pgmeta.DefaultSegmentSize), StopWAL: pgmeta.SegmentOf(lastNeededByte(stop, start), tli, pgmeta.DefaultSegmentSize),
		StartTime: w.at(stopMin - 0.2), StopTime: w.at(stopMin), WALSegmentSize: pgmeta.DefaultSegmentSize, DatabaseSize: 1 << 30,
	}
	extra, _ := json.Marshal(bi)
	sn := &snapshot.Snapshot{Time: w.at(stopMin), Kind: snapshot.KindPostgres, Paths: []string{"/pg"}, Extra: extra,
		Summary: &snapshot.Summary{DataStored: 12345}}
	if err := snapshot.Save(w.ctx, w.repo, sn); err != nil {
		w.t.Fatal(err)
	}
	return sn
}

func (w *walWorld) status() *StatusReport {
	w.t.Helper()
	s, err := Status(w.ctx, w.repo)
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func seg(no uint64) LSN { return LSN(no * uint64(pgmeta.DefaultSegmentSize)) }

func TestStatusWindowAndTargets(t *testing.T) {
	w := newWALWorld(t)
	w.segments(1, 1, 10, 0)
	a := w.backup(1, seg(2)+0x28, seg(3)+0x100, 2.5)
	b := w.backup(1, seg(6)+0x28, seg(6)+0x200, 6.5)
	s := w.status()

	if s.SegmentSize != pgmeta.DefaultSegmentSize || len(s.Timelines) != 1 || len(s.Gaps) != 0 || len(s.BaseBackups) != 2 {
		t.Fatalf("status: %+v", s)
	}
	if r := s.Timelines[0].Ranges; len(r) != 1 || r[0].First != "000000010000000000000001" || r[0].Last != "00000001000000000000000A" || r[0].Count != 10 {
		t.Errorf("ranges %+v", r)
	}
	if len(s.Windows) != 1 {
		t.Fatalf("windows %+v", s.Windows)
	}
	win := s.Windows[0]
	if win.Base != a.ID.Short() || !win.FromTime.Equal(w.at(2.5)) || win.FromLSN != seg(3)+0x100 || !win.ToTime.Equal(w.at(10).Add(-20*time.Second)) ||
		win.ToLSN != seg(11) || win.LastWAL != "00000001000000000000000A" || win.FirstMissing != "" || !win.LastArchived.Equal(w.at(10)) ||
		win.LastTransaction == nil || win.LastTransaction.XID != 1010 || win.LastTransaction.LSN != seg(10)+40 {
		t.Errorf("window %+v", win)
	}
	if s.NewestWAL != "00000001000000000000000A" || s.RPOSeconds == nil || *s.RPOSeconds < time.Since(w.at(10)).Seconds()-5 {
		t.Errorf("newest %s rpo %v", s.NewestWAL, s.RPOSeconds)
	}
	if s.BaseBackups[0].StoredSize != 12345 || s.BaseBackups[0].MissingWAL != "" {
		t.Errorf("base backup %+v", s.BaseBackups[0])
	}

	pick := func(tg Target) (*snapshot.Snapshot, error) { return s.CheckTarget(w.ctx, tg) }
	tm := func(min float64) *time.Time { v := w.at(min); return &v }
	lsn := func(l LSN) *LSN { return &l }
	for _, tc := range []struct {
		target Target
		want   *snapshot.Snapshot
	}{
		{Target{Time: tm(3)}, a},
		{Target{Time: tm(6.5)}, a}, // b ends exactly then: not before
		{Target{Time: tm(6.6)}, b},
		{Target{Time: tm(9.6)}, b}, // the last commit is at 9:40
		{Target{XID: "1008"}, b},
		{Target{XID: "1005"}, a}, // before b began
		{Target{XID: "1006"}, a}, // while b ran: from b, recovery would never meet it
		{Target{LSN: lsn(seg(3) + 0x100)}, a},
		{Target{LSN: lsn(seg(10) + 5)}, b},
		{Target{Latest: true}, b},
	} {
		got, err := pick(tc.target)
		if err != nil || got.ID != tc.want.ID {
			t.Errorf("CheckTarget(%s): %v, %v; want %s", tc.target, got, err, tc.want.ID.Short())
		}
	}
	for _, tc := range []struct {
		target Target
		msg    string
	}{
		{Target{Time: tm(1)}, "before the end of the oldest base backup"},
		{Target{Time: tm(2.5)}, "before the end of the oldest base backup"},
		{Target{Time: tm(10.1)}, "is not before the last transaction in the archived WAL"},
		{Target{Time: tm(9.7)}, "the last transaction recovery can replay from base backup"},
		{Target{XID: "1234"}, "transaction 1234 is not in the WAL archived after base backup"},
		{Target{XID: "1003"}, "transaction 1003 is the commit of transaction 1003 at 2025-03-01 12:02:40.000000Z (0/3000028), during base backup"},
		{Target{Name: "before-upgrade", Timeline: "current"}, `restore point "before-upgrade" is not in the WAL`},
		{Target{LSN: lsn(seg(11))}, "after the newest archived WAL"},
		{Target{LSN: lsn(seg(10) + 0x100)}, "LSN 0/A000100 is after the last record in the WAL archived"}, // after the switch record
		{Target{LSN: lsn(seg(1))}, "before the end of the oldest base backup"},
		{Target{Time: tm(5), Latest: true}, "exactly one"},
		{Target{}, "exactly one"},
		{Target{Latest: true, Timeline: "7"}, "timeline 7 does not exist"},
		{Target{Latest: true, Timeline: "x"}, "want latest"},
	} {
		_, err := pick(tc.target)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("CheckTarget(%+v): %v, want an error containing %q", tc.target, err, tc.msg)
		}
	}
	_, err := pick(Target{Time: tm(12)})
	if !errors.Is(err, ErrOutsideWindow) || !strings.Contains(err.Error(), "the recoverable window is 2025-03-01 12:02:30") {
		t.Errorf("refusal does not name the window: %v", err)
	}
}

func TestStatusGap(t *testing.T) {
	w := newWALWorld(t)
	w.segments(1, 2, 7, 0)
	w.segments(1, 10, 12, 0) // 8 and 9 missing
	w.backup(1, seg(2)+0x28, seg(3), 2.5)
	s := w.status()
	if len(s.Gaps) != 1 || s.Gaps[0].First != "000000010000000000000008" || s.Gaps[0].Last != "000000010000000000000009" || s.Gaps[0].Count != 2 {
		t.Fatalf("gaps %+v", s.Gaps)
	}
	if len(s.Windows) != 1 || s.Windows[0].LastWAL != "000000010000000000000007" || s.Windows[0].FirstMissing != "000000010000000000000008" {
		t.Fatalf("windows %+v", s.Windows)
	}
	tm := func(min float64) *time.Time { v := w.at(min); return &v }
	if _, err := s.CheckTarget(w.ctx, Target{Time: tm(6.5)}); err != nil {
		t.Errorf("target before the gap: %v", err)
	}
	_, err := s.CheckTarget(w.ctx, Target{Time: tm(9)})
	if err == nil || !strings.Contains(err.Error(), "WAL segment 000000010000000000000008 is missing from the repository, and the last transaction recovery can replay from base backup") ||
		!strings.Contains(err.Error(), "commit of transaction 1007 at 2025-03-01 12:06:40") {
		t.Errorf("target beyond the gap: %v", err)
	}
	// Latest would silently stop at the gap, short of the WAL after it.
	if _, err := s.CheckTarget(w.ctx, Target{Latest: true}); err == nil || !strings.Contains(err.Error(), "skip the WAL archived after the gap") {
		t.Errorf("latest across a gap: %v", err)
	}
	// A newer backup after the gap opens a second window.
	w.backup(1, seg(10)+0x28, seg(10)+0x400, 10.5)
	s = w.status()
	if len(s.Windows) != 2 || s.Windows[1].LastWAL != "00000001000000000000000C" {
		t.Fatalf("windows after a new backup %+v", s.Windows)
	}
	if _, err := s.CheckTarget(w.ctx, Target{Time: tm(11)}); err != nil {
		t.Errorf("target after the new backup: %v", err)
	}
	for xid, want := range map[string]int{"1011": 1, "1007": 0} {
		got, err := s.CheckTarget(w.ctx, Target{XID: xid})
		if err != nil || got.ID != s.BaseBackups[want].Snapshot.ID {
			t.Errorf("transaction %s: %v, %v; want base backup %s", xid, got, err, s.BaseBackups[want].ShortID)
		}
	}
	// During the newer backup, and beyond the gap for the older one.
	if _, err := s.CheckTarget(w.ctx, Target{XID: "1010"}); err == nil || !strings.Contains(err.Error(), "during base backup "+s.BaseBackups[1].ShortID) {
		t.Errorf("transaction during the newer backup, after the gap: %v", err)
	}
	_, err = s.CheckTarget(w.ctx, Target{Time: tm(9)})
	if err == nil || !strings.Contains(err.Error(), "000000010000000000000008 is missing") {
		t.Errorf("target in the gap: %v", err)
	}

	// A backup whose own WAL is incomplete is shown as such.
	w.backup(1, seg(8)+0x28, seg(9), 9.1)
	s = w.status()
	var broken *BaseBackup
	for _, b := range s.BaseBackups {
		if b.StartWAL == "000000010000000000000008" {
			broken = b
		}
	}
	if broken == nil || broken.MissingWAL != "000000010000000000000008" {
		t.Errorf("incomplete backup: %+v", broken)
	}
	_, err = s.CheckTarget(w.ctx, Target{Time: tm(9.5)})
	if err == nil || !strings.Contains(err.Error(), "cannot be restored: WAL segment 000000010000000000000008") {
		t.Errorf("target needing the incomplete backup: %v", err)
	}
}

func TestStatusTimelines(t *testing.T) {
	w := newWALWorld(t)
	// Timeline 1 runs on to segment 10; timeline 2 branched in segment 5.
	w.segments(1, 1, 10, 0)
	w.history(2, "1\t0/5800000\tbefore 2025-03-01 12:05:30+00\n")
	w.segments(2, 5, 8, 0.5)
	a := w.backup(1, seg(2)+0x28, seg(3), 2.5)
	c := w.backup(1, seg(7)+0x28, seg(7)+0x100, 7.2) // after the branch: timeline 1 only
	s := w.status()

	if len(s.Timelines) != 2 || s.Timelines[1].TLI != 2 || len(s.Timelines[1].Parents) != 1 || s.Timelines[1].Parents[0].SwitchPoint != 0x5800000 {
		t.Fatalf("timelines %+v %+v", s.Timelines[0], s.Timelines[1])
	}
	if len(s.Gaps) != 0 {
		t.Errorf("a branch is not a gap: %+v", s.Gaps)
	}
	// a reaches the end of timeline 2; c only timeline 1.
	var on1, on2 *Window
	for i := range s.Windows {
		switch s.Windows[i].TLI {
		case 1:
			on1 = &s.Windows[i]
		case 2:
			on2 = &s.Windows[i]
		}
	}
	if on2 == nil || on2.Base != a.ID.Short() || on2.LastWAL != "000000020000000000000008" {
		t.Errorf("window on timeline 2: %+v", on2)
	}
	// Both a and c reach the end of timeline 1: one window from a.
	if on1 == nil || on1.Base != a.ID.Short() || on1.LastWAL != "00000001000000000000000A" {
		t.Errorf("window on timeline 1: %+v", on1)
	}

	tm := func(min float64) *time.Time { v := w.at(min); return &v }
	// Timeline 1 went on after the branch (segments 9 and 10 archived
	// after timeline 2's last): "latest" is refused, naming both.
	if _, err := s.CheckTarget(w.ctx, Target{Time: tm(8)}); err == nil || !strings.Contains(err.Error(), "--timeline 1") ||
		!strings.Contains(err.Error(), "--timeline 2") || !strings.Contains(err.Error(), "00000001000000000000000A") {
		t.Errorf("latest after a fork both sides went on from: %v", err)
	}
	// Timeline 2 by number: c is off its history, a is used.
	if got, err := s.CheckTarget(w.ctx, Target{Time: tm(8), Timeline: "2"}); err != nil || got.ID != a.ID {
		t.Errorf("time on timeline 2: %v, %v", got, err)
	}
	// What a recovery to the latest WAL along timeline 2 must replay:
	// the commit in its last segment.
	if x, err := s.LastTransactionReached(w.ctx, a, "2"); err != nil || x == nil || x.XID != 1008 || x.LSN != seg(8)+40 {
		t.Errorf("last transaction reached from a along timeline 2: %+v, %v", x, err)
	}
	latest := RestoreOptions{Target: Target{Latest: true, Timeline: "2"}}
	for _, c := range []struct {
		replay LSN
		early  bool
	}{{seg(8) + 20, true}, {seg(6), true}, {seg(8) + 40, true}, {seg(8) + 80, false}, {seg(9), false}} {
		r := c.replay
		err := checkReachedLatest(w.ctx, s, a, latest, &RecoveryPoint{ReplayLSN: &r})
		if (err != nil) != c.early {
			t.Errorf("recovery to the latest WAL replayed to %s: %v, want ended early %v", r, err, c.early)
		}
	}
	if got, err := s.CheckTarget(w.ctx, Target{Time: tm(8), Timeline: "current"}); err != nil || got.ID != c.ID {
		t.Errorf("time on timeline 1: %v, %v", got, err)
	}
	if got, err := s.CheckTarget(w.ctx, Target{Time: tm(9.5), Timeline: "1"}); err != nil || got.ID != c.ID {
		t.Errorf("timeline 1 by number: %v, %v", got, err)
	}
	if _, err := s.CheckTarget(w.ctx, Target{Time: tm(9.5), Timeline: "2"}); err == nil || !strings.Contains(err.Error(), "is not before the last transaction") {
		t.Errorf("beyond timeline 2's end: %v", err)
	}

	// Timeline 2 loses its first segment: the switch segment of timeline 1
	// cannot stand in for it beyond the switch.
	w2 := newWALWorld(t)
	w2.segments(1, 1, 10, 0)
	w2.history(2, "1\t0/5800000\treason\n")
	w2.segments(2, 6, 8, 0.5)
	w2.backup(1, seg(2)+0x28, seg(3), 2.5)
	s2 := w2.status()
	_, err := s2.CheckTarget(w2.ctx, Target{Time: func() *time.Time { v := w2.at(8); return &v }(), Timeline: "2"})
	if err == nil || !strings.Contains(err.Error(), "WAL segment 000000020000000000000005 is missing") {
		t.Errorf("missing first segment of timeline 2: %v", err)
	}
}

func TestStatusJSON(t *testing.T) {
	w := newWALWorld(t)
	w.segments(1, 1, 3, 0)
	w.backup(1, seg(1)+0x28, seg(2), 1.5)
	b, err := json.Marshal(w.status())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"wal_segment_size":16777216`, `"rpo_seconds":`, `"from_lsn":"0/2000000"`, `"first":"000000010000000000000001"`, `"gaps":[]`, `"wal_expiry_boundaries":[]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	// The WAL expiry boundaries prune recorded, per system; a record that
	// cannot be read is a problem.
	for _, sys := range []uint64{8, 7} {
		if _, err := walexpiry.Save(w.ctx, w.repo, w.at(30), []walexpiry.Boundary{{SystemID: sys, From: "000000010000000000000002"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.repo.Backend().Save(w.ctx, backend.Handle{Type: backend.ExpiryFile, Name: strings.Repeat("ab", 32)}, strings.NewReader("not sealed"), 10); err != nil {
		t.Fatal(err)
	}
	s := w.status()
	if b, err = json.Marshal(s); err != nil {
		t.Fatal(err)
	}
	want := `"wal_expiry_boundaries":[{"system_identifier":"7","from":"000000010000000000000002"},{"system_identifier":"8","from":"000000010000000000000002"}]`
	if !strings.Contains(string(b), want) {
		t.Errorf("JSON lacks %s:\n%s", want, b)
	}
	if !strings.Contains(strings.Join(s.Problems, "\n"), "WAL expiry record abababab") {
		t.Errorf("problems do not name the damaged expiry record: %q", s.Problems)
	}

	// A restore's status does not read the records (NoWALExpiry); its
	// ArchiveDamage, were it asked, reads them then.
	s, err = StatusWith(w.ctx, w.repo, StatusOptions{NoWALExpiry: true})
	if err != nil {
		t.Fatal(err)
	}
	if b, err = json.Marshal(s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"wal_expiry_boundaries":[]`) || len(s.Problems) != 0 {
		t.Errorf("status without the expiry records: problems %q\n%s", s.Problems, b)
	}
	ds, err := s.ArchiveDamage(w.ctx)
	if err != nil || len(ds) != 1 || ds[0].Object != "expiry/"+strings.Repeat("ab", 32) {
		t.Errorf("ArchiveDamage of a status without the expiry records: %+v %v, want the damaged record", ds, err)
	}
}

func TestStatusEmpty(t *testing.T) {
	w := newWALWorld(t)
	s := w.status()
	if s.RPOSeconds != nil || len(s.Windows) != 0 || s.SegmentSize != pgmeta.DefaultSegmentSize {
		t.Errorf("empty status %+v", s)
	}
	if _, err := s.CheckTarget(w.ctx, Target{Latest: true}); err == nil || !strings.Contains(err.Error(), "no PostgreSQL base backup") {
		t.Errorf("empty: %v", err)
	}
}

// After a fork (a restore promoted onto timeline 2 while the original
// server went on on timeline 1), one base backup has a window on each.
func TestStatusWindowPerTimeline(t *testing.T) {
	w := newWALWorld(t)
	w.segments(1, 1, 10, 0)
	w.history(2, "1\t0/5800000\tbefore 2025-03-01 12:05:30+00\n")
	w.segments(2, 5, 8, 0.5)
	a := w.backup(1, seg(2)+0x28, seg(3), 2.5)
	s := w.status()
	got := map[uint32]string{}
	for _, win := range s.Windows {
		if win.Base != a.ID.Short() {
			t.Errorf("window from %s, want %s", win.Base, a.ID.Short())
		}
		got[win.TLI] = win.LastWAL
	}
	if len(s.Windows) != 2 || got[1] != "00000001000000000000000A" || got[2] != "000000020000000000000008" {
		t.Errorf("windows %+v", s.Windows)
	}
}

// WAL of another cluster is never read as the base backup's.
func TestStatusOtherClusterWAL(t *testing.T) {
	w := newWALWorld(t)
	w.segments(1, 1, 6, 0)
	w.sysID = 8
	w.backup(1, seg(2)+0x28, seg(3), 2.5)
	s := w.status()
	if len(s.Problems) == 0 || !strings.Contains(strings.Join(s.Problems, "\n"), "belongs to cluster 7, not to cluster 8") {
		t.Errorf("problems %q", s.Problems)
	}
	for _, tg := range []Target{{XID: "1005"}, {Time: func() *time.Time { v := w.at(4); return &v }()}} {
		if _, err := s.CheckTarget(w.ctx, tg); err == nil || !strings.Contains(err.Error(), "two clusters archive into this repository") {
			t.Errorf("%s: %v", tg, err)
		}
	}
}

// fakeSegmentBegun is fakeSegment for the first segment of timeline tli
// after a promotion at its start: an end-of-recovery record (begun at
// began, after timeline tli-1), then the commit and the switch.
func fakeSegmentBegun(tli uint32, no uint64, began, commit time.Time, xid uint32) []byte {
	le := binary.LittleEndian
	eor := le.AppendUint64(nil, uint64(began.Sub(time.Unix(postgresEpochUnixSecs, 0)).Microseconds()))
	eor = le.AppendUint32(eor, tli)
	eor = le.AppendUint32(eor, tli-1)
	return fakeSegmentBegunBy(tli, no, xlogEndOfRecovery, eor, commit, xid)
}

// fakeSegmentBegunBy is the first segment of timeline tli after a
// promotion at its start: the XLOG record (info, main data) the
// promotion wrote first, at the switch point 40 bytes in, then the
// commit of xid at commit and the switch, each where the one before
// ends (8-byte aligned).
func fakeSegmentBegunBy(tli uint32, no uint64, info uint8, data []byte, commit time.Time, xid uint32) []byte {
	start := seg(no)
	page := fakeSegment(tli, no, commit, xid)
	clear(page[40:])
	le := binary.LittleEndian
	first := fakeRecord(0, seg(no-1)+80, info, rmXLOG, append([]byte{255, byte(len(data))}, data...))
	copy(page[40:], first)
	at := 40 + (len(first)+7)&^7
	main := le.AppendUint64(nil, uint64(commit.Sub(time.Unix(postgresEpochUnixSecs, 0)).Microseconds()))
	commitRec := fakeRecord(xid, start+40, xactCommit, rmXact, append([]byte{255, byte(len(main))}, main...))
	copy(page[at:], commitRec)
	copy(page[at+(len(commitRec)+7)&^7:], fakeRecord(0, start+LSN(at), xlogSwitch, rmXLOG, nil))
	return page
}

// TestForkMidSegment: the parent's commits after a switch point inside a
// segment, in the rest of that segment, count (second review: only the
// segments after it were read).
func TestForkMidSegment(t *testing.T) {
	for _, c := range []struct {
		beganMin float64
		refused  bool
	}{{5.5, true}, {6.5, false}} {
		w := newWALWorld(t)
		w.segments(1, 1, 6, 0) // timeline 1's last commit: in segment 6, at 12:05:40
		w.history(2, "1\t0/6000028\tno recovery target specified\n")
		began := w.at(c.beganMin)
		name := Segment{TLI: 2, No: 6}.Name(pgmeta.DefaultSegmentSize)
		// Timeline 2's copy of segment 6: its end-of-recovery record at the
		// switch point.
		if err := w.repo.SaveNamed(w.ctx, backend.WALFile, name, fakeSegmentBegun(2, 6, began, began.Add(time.Second), 2006)); err != nil {
			t.Fatal(err)
		}
		w.be.times[name] = began.Add(time.Minute)
		w.backup(1, seg(2)+0x28, seg(3), 2.5)
		_, err := w.status().CheckTarget(w.ctx, Target{Latest: true})
		if c.refused != (err != nil) {
			t.Errorf("timeline 2 began at minute %v: %v, want refused %v", c.beganMin, err, c.refused)
		}
	}
}

// fakeSegmentCheckpointBegun is fakeSegmentBegun with an end-of-recovery
// checkpoint instead of the end-of-recovery record: its time is whole
// seconds (began's, truncated).
func fakeSegmentCheckpointBegun(tli uint32, no uint64, began, commit time.Time, xid uint32) []byte {
	le := binary.LittleEndian
	ckpt := make([]byte, 88) // CheckPoint: redo, this and the previous timeline, ..., time at 64
	le.PutUint64(ckpt[0:], uint64(seg(no)+40))
	le.PutUint32(ckpt[8:], tli)
	le.PutUint32(ckpt[12:], tli-1)
	le.PutUint64(ckpt[64:], uint64(began.Unix()))
	return fakeSegmentBegunBy(tli, no, xlogCheckpointShutdwn, ckpt, commit, xid)
}

// TestForkWithinCheckpointSecond: a promotion whose end-of-recovery
// checkpoint records its time in whole seconds, and the parent's commit
// 0.3 s into that second: refused (which came first cannot be told; the
// end of the second was taken before, and such commits made after a
// promotion were lost by a restore that followed the new timeline:
// hostile test); a checkpoint in the next second is not refused.
func TestForkWithinCheckpointSecond(t *testing.T) {
	for _, c := range []struct {
		ckptAfter time.Duration // the checkpoint's second, after the parent's last commit's
		refused   bool
	}{{0, true}, {time.Second, false}} {
		w := newWALWorld(t)
		w.segments(1, 1, 5, 0)
		commit := w.at(6).Add(-20*time.Second + 300*time.Millisecond) // the parent's last commit: 0.3 s into a second
		name1 := Segment{TLI: 1, No: 6}.Name(pgmeta.DefaultSegmentSize)
		if err := w.repo.SaveNamed(w.ctx, backend.WALFile, name1, fakeSegment(1, 6, commit, 1006)); err != nil {
			t.Fatal(err)
		}
		w.be.times[name1] = w.at(6)
		w.history(2, "1\t0/6000028\tno recovery target specified\n")
		began := commit.Truncate(time.Second).Add(c.ckptAfter)
		name := Segment{TLI: 2, No: 6}.Name(pgmeta.DefaultSegmentSize)
		if err := w.repo.SaveNamed(w.ctx, backend.WALFile, name, fakeSegmentCheckpointBegun(2, 6, began, began.Add(2*time.Second), 2006)); err != nil {
			t.Fatal(err)
		}
		w.be.times[name] = began.Add(time.Minute)
		w.backup(1, seg(2)+0x28, seg(3), 2.5)
		_, err := w.status().CheckTarget(w.ctx, Target{Latest: true})
		if c.refused != (err != nil) {
			t.Fatalf("checkpoint %v after the commit's second: %v, want refused %v", c.ckptAfter, err, c.refused)
		}
		if c.refused && !strings.Contains(err.Error(), "cannot be told") {
			t.Errorf("the refusal does not say the times are too coarse: %v", err)
		}
	}
}

// TestForkByWALTimes: after a fork, "latest" is refused only when the
// timeline left behind committed after the new one began, by the times in
// the WAL (the end-of-recovery record, the commits), whatever the times
// the objects were stored at (a copy to another repository changes them).
func TestForkByWALTimes(t *testing.T) {
	for _, c := range []struct {
		name      string
		beganMin  float64 // when timeline 2 began
		tl1Offset float64 // when timeline 1's segments were stored, minutes after their own
		refused   bool
	}{
		{"the old timeline stopped before the fork (a recovery to the past, a failover)", 10.5, 0, false},
		{"the same, its objects stored last (a copy)", 10.5, 100, false},
		{"the old timeline went on after the fork (a test copy archiving here)", 7.5, 0, true},
		{"the same, stored first", 7.5, -100, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWALWorld(t)
			w.segments(1, 1, 10, 0)
			for no := uint64(1); no <= 10; no++ {
				n := Segment{TLI: 1, No: no}.Name(pgmeta.DefaultSegmentSize)
				w.be.times[n] = w.be.times[n].Add(time.Duration(c.tl1Offset * float64(time.Minute)))
			}
			w.history(2, "1\t0/6000000\tno recovery target specified\n")
			began := w.at(c.beganMin)
			name := Segment{TLI: 2, No: 6}.Name(pgmeta.DefaultSegmentSize)
			if err := w.repo.SaveNamed(w.ctx, backend.WALFile, name, fakeSegmentBegun(2, 6, began, began.Add(time.Second), 2006)); err != nil {
				t.Fatal(err)
			}
			w.be.times[name] = began.Add(time.Minute)
			a := w.backup(1, seg(2)+0x28, seg(3), 2.5)
			s := w.status()
			_, err := s.CheckTarget(w.ctx, Target{Latest: true})
			if c.refused != (err != nil) {
				t.Fatalf("latest: %v, want refused %v", err, c.refused)
			}
			if c.refused && (!strings.Contains(err.Error(), "--timeline 1") || !strings.Contains(err.Error(), "last transaction at")) {
				t.Errorf("the refusal: %v", err)
			}
			// pg status says it too: a running standby follows the fork
			// without asking (hostile test).
			warned := slices.ContainsFunc(s.Problems, func(p string) bool { return strings.Contains(p, "a standby following latest") })
			if warned != c.refused {
				t.Errorf("status problems %q: want a fork warning %v", s.Problems, c.refused)
			}
			if got, err := s.CheckTarget(w.ctx, Target{Latest: true, Timeline: "2"}); err != nil || got.ID != a.ID {
				t.Errorf("timeline 2 by number: %v, %v", got, err)
			}
		})
	}
}

// TestHistoryFileMissing: WAL of timeline 2 without its history file
// (deleted, or never archived), or a history file of timeline 3 naming 1
// as an ancestor without 2's: "latest" from a base backup of timeline 1
// would stop on timeline 1 and miss the rest (hostile test: a restore
// without timeline 2's rows, exit 0). Refused, naming the missing file;
// --timeline 1 restores timeline 1 as asked. WAL of an unrelated later
// timeline (another system) is not refused.
func TestHistoryFileMissing(t *testing.T) {
	for _, c := range []struct {
		name    string
		setup   func(w *walWorld)
		refused bool
	}{
		{"segments of timeline 2, no 00000002.history", func(w *walWorld) { w.segments(2, 6, 8, 0) }, true},
		{"00000003.history naming 1 and 2, no 00000002.history", func(w *walWorld) {
			w.history(3, "1\t0/6000000\tno recovery target specified\n2\t0/7000000\tno recovery target specified\n")
		}, true},
		{"segments of timeline 5 only (another system)", func(w *walWorld) { w.segments(5, 20, 22, 0) }, false},
		{"segments of timeline 2 and its history file", func(w *walWorld) {
			w.history(2, "1\t0/6000000\tno recovery target specified\n")
			w.segments(2, 6, 8, 0)
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWALWorld(t)
			w.segments(1, 1, 5, 0) // timeline 1 ends at the switch point 0/6000000
			c.setup(w)
			w.backup(1, seg(2)+0x28, seg(3), 2.5)
			s := w.status()
			if strings.HasPrefix(c.name, "segments of timeline 2, no") != slices.ContainsFunc(s.Problems, func(p string) bool { return strings.Contains(p, "no history file 00000002.history") }) {
				t.Errorf("status problems: %q", s.Problems)
			}
			_, err := s.CheckTarget(w.ctx, Target{Latest: true})
			if c.refused != (err != nil) || c.refused && !strings.Contains(err.Error(), "00000002.history") {
				t.Fatalf("latest: %v, want refused %v", err, c.refused)
			}
			if _, err := s.CheckTarget(w.ctx, Target{Latest: true, Timeline: "1"}); err != nil {
				t.Fatalf("--timeline 1: %v", err)
			}
		})
	}
}

// TestArchiveDamage: segments missing after the newest base backup's stop,
// with later WAL of its system archived, are damage verify reports
// (hostile test: a segment deleted by hand inside the recovery window
// passed verify); a gap before the base backup (WAL expiry leaves those),
// or before WAL of another system, is not.
func TestArchiveDamage(t *testing.T) {
	for _, c := range []struct {
		name  string
		segs  [][2]uint64 // runs of timeline 1's segments
		start uint64      // the base backup's start and stop segment
		sysID uint64
		want  []string // objects
	}{
		{"a gap after the base backup", [][2]uint64{{1, 3}, {6, 8}}, 3, 0, []string{"wal/000000010000000000000004"}},
		{"no gap", [][2]uint64{{1, 8}}, 3, 0, nil},
		{"a gap before the base backup", [][2]uint64{{1, 2}, {5, 8}}, 6, 0, nil},
		{"later WAL of another system", [][2]uint64{{1, 3}, {6, 8}}, 3, 9, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWALWorld(t)
			w.sysID = c.sysID
			for _, r := range c.segs {
				w.segments(1, r[0], r[1], 0)
			}
			w.backup(1, seg(c.start)+0x28, seg(c.start)+0x1000, float64(c.start)+0.5)
			ds, err := w.status().ArchiveDamage(w.ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range ds {
				got = append(got, d.Object)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("ArchiveDamage: %v, want %v", ds, c.want)
			}
		})
	}
	// After a failover: the gap on timeline 2, which recovery to the
	// latest from the base backup of timeline 1 follows.
	{
		w := newWALWorld(t)
		w.segments(1, 1, 5, 0)
		w.history(2, "1\t0/6000000\tno recovery target specified\n")
		w.segments(2, 6, 7, 0)
		w.segments(2, 10, 12, 0)
		w.backup(1, seg(2)+0x28, seg(3), 2.5)
		ds, err := w.status().ArchiveDamage(w.ctx)
		if err != nil || len(ds) != 1 || ds[0].Object != "wal/000000020000000000000008" || !strings.Contains(ds[0].Error, "(2 in all before 00000002000000000000000A") {
			t.Fatalf("ArchiveDamage after a failover: %v %v", ds, err)
		}
	}
	// WAL of timeline 2 without its history file.
	w := newWALWorld(t)
	w.segments(1, 1, 5, 0)
	w.segments(2, 6, 8, 0)
	w.backup(1, seg(2)+0x28, seg(3), 2.5)
	ds, err := w.status().ArchiveDamage(w.ctx)
	if err != nil || len(ds) != 1 || ds[0].Object != "wal/00000002.history" {
		t.Fatalf("ArchiveDamage without 00000002.history: %v %v", ds, err)
	}
}

// TestArchiveDamageExpiry: a segment missing between two base backups,
// inside the older one's recoverable window, is damage (it passed verify:
// only the WAL after the newest base backup was checked); WAL before the
// boundary a prune recorded (walexpiry) is not, whether removed or still
// there (a prune killed after its record, before its deletions), and a
// segment missing after the boundary is. b1 starts in segment 3, b2 in 8,
// b3 in 14; the WAL runs to segment 20.
func TestArchiveDamageExpiry(t *testing.T) {
	const floor = "000000010000000000000008" // b2's start
	for _, c := range []struct {
		name    string
		segs    [][2]uint64 // runs of timeline 1's segments
		b1      bool        // b1 kept
		floor   string      // the boundary recorded, if any
		damaged bool        // an expiry record that cannot be read
		want    []string    // objects
		says    string
	}{
		{"a gap between b1 and b2", [][2]uint64{{1, 4}, {7, 20}}, true, "", false,
			[]string{"wal/000000010000000000000005"}, "(2 in all before 000000010000000000000007, which is archived), inside the recoverable window of base backup "},
		{"a gap between b2 and b3", [][2]uint64{{1, 10}, {12, 20}}, true, "", false, []string{"wal/00000001000000000000000B"}, ""},
		{"two gaps", [][2]uint64{{1, 4}, {6, 10}, {12, 20}}, true, "", false,
			[]string{"wal/000000010000000000000005", "wal/00000001000000000000000B"}, ""},
		{"b1 forgotten, WAL before b2 expired", [][2]uint64{{8, 20}}, false, floor, false, nil, ""},
		{"b1 archive-only, WAL around it expired", [][2]uint64{{3, 3}, {8, 20}}, true, floor, false, nil, ""},
		{"b1 archive-only, expired by a prune that recorded nothing", [][2]uint64{{3, 3}, {8, 20}}, true, "", false,
			[]string{"wal/000000010000000000000004"}, "run that prune again"},
		{"killed between the record and the deletions", [][2]uint64{{1, 20}}, true, floor, false, nil, ""},
		{"a gap after the boundary", [][2]uint64{{3, 3}, {8, 10}, {12, 20}}, true, floor, false, []string{"wal/00000001000000000000000B"}, ""},
		{"a gap across the boundary", [][2]uint64{{3, 3}, {10, 20}}, true, floor, false, []string{"wal/000000010000000000000009"}, ""},
		{"a gap after the newest", [][2]uint64{{8, 15}, {17, 20}}, false, floor, false,
			[]string{"wal/000000010000000000000010"}, ", the newest of its database system"},
		{"an expiry record damaged", [][2]uint64{{8, 20}}, false, "", true, []string{"expiry/"}, "which WAL prune removed on purpose is unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWALWorld(t)
			for _, r := range c.segs {
				w.segments(1, r[0], r[1], 0)
			}
			if c.b1 {
				w.backup(1, seg(3)+0x28, seg(3)+0x1000, 3.5)
			}
			w.backup(1, seg(8)+0x28, seg(8)+0x1000, 8.5)
			w.backup(1, seg(14)+0x28, seg(14)+0x1000, 14.5)
			if c.floor != "" {
				if _, err := walexpiry.Save(w.ctx, w.repo, w.at(30), []walexpiry.Boundary{{SystemID: 7, From: c.floor}}); err != nil {
					t.Fatal(err)
				}
			}
			if c.damaged {
				if err := w.repo.Backend().Save(w.ctx, backend.Handle{Type: backend.ExpiryFile, Name: strings.Repeat("ab", 32)}, strings.NewReader("not sealed"), 10); err != nil {
					t.Fatal(err)
				}
			}
			ds, err := w.status().ArchiveDamage(w.ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range ds {
				got = append(got, strings.TrimSuffix(d.Object, strings.Repeat("ab", 32)))
			}
			if !slices.Equal(got, c.want) || c.says != "" && !strings.Contains(ds[0].Error, c.says) {
				t.Fatalf("ArchiveDamage: %v, want %v saying %q", ds, c.want, c.says)
			}
		})
	}
}
