package pg

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// Target is a point-in-time recovery target: exactly one of Time, LSN,
// XID, Name or Latest; and the timeline to follow: "latest" or "" (the
// newest timeline, PostgreSQL's default), "current" (the base backup's),
// or a timeline number.
type Target struct {
	Time     *time.Time
	LSN      *LSN
	XID      string
	Name     string
	Latest   bool
	Timeline string
}

func (t Target) String() string {
	switch {
	case t.Time != nil:
		return "time " + fmtStatusTime(*t.Time)
	case t.LSN != nil:
		return "LSN " + t.LSN.String()
	case t.XID != "":
		return "transaction " + t.XID
	case t.Name != "":
		return fmt.Sprintf("restore point %q", t.Name)
	}
	return "the end of the archived WAL"
}

// StatusRepo is what Status reads from a repository.
type StatusRepo interface {
	snapshot.Store
	Backend() backend.Backend
	LoadNamed(ctx context.Context, t backend.FileType, name string) ([]byte, error)
}

// StatusReport is the state of a repository's PostgreSQL backups: the
// archived WAL per timeline, its gaps, the base backups, and the window of
// time recovery can reach.
type StatusReport struct {
	Now         time.Time `json:"now"`
	SegmentSize int64     `json:"wal_segment_size"`
	WALFiles    int       `json:"wal_files"`        // objects under wal/
	WALStored   int64     `json:"wal_stored_bytes"` // their stored (compressed, encrypted) size
	// NewestWAL is the most recently archived segment, and RPOSeconds its
	// age: how much committed work a disaster now could lose at most (plus
	// what the server has not archived yet).
	NewestWAL         string     `json:"newest_wal,omitempty"`
	NewestWALArchived *time.Time `json:"newest_wal_archived,omitempty"`
	RPOSeconds        *float64   `json:"rpo_seconds"`

	Timelines   []*TimelineStatus `json:"timelines"`
	Gaps        []Gap             `json:"gaps"`
	Windows     []Window          `json:"windows"`
	BaseBackups []*BaseBackup     `json:"base_backups"`
	// WALExpiry are the WAL expiry boundaries prune recorded, per
	// database system (walexpiry.Records): WAL before From may be
	// removed on purpose; from it on, none was.
	WALExpiry []walexpiry.Boundary `json:"wal_expiry_boundaries"`
	Problems  []string             `json:"problems,omitempty"`

	segs map[uint32]map[uint64]time.Time // timeline -> segment number -> archive time
	hist map[uint32]*History
	repo StatusRepo // to read WAL records
	// floors are the WAL expiry boundaries by system, expiryDamaged the
	// expiry records that cannot be read (each a *walexpiry.DamagedRecord).
	floors        walexpiry.Floors
	expiryDamaged []error
	expiryLoaded  bool // floors and expiryDamaged are read (StatusOptions.NoWALExpiry)
}

// TimelineStatus is the archived WAL of one timeline.
type TimelineStatus struct {
	TLI      uint32         `json:"timeline"`
	Parents  []HistoryEntry `json:"history,omitempty"` // from its history file
	Segments int            `json:"segments"`
	Ranges   []SegmentRange `json:"ranges"`
	Partial  []string       `json:"partial,omitempty"`
}

// SegmentRange is a run of consecutive archived segments.
type SegmentRange struct {
	First         string    `json:"first"`
	Last          string    `json:"last"`
	Count         uint64    `json:"count"`
	FirstArchived time.Time `json:"first_archived"`
	LastArchived  time.Time `json:"last_archived"`
}

// Gap is a run of segments missing between archived ones on a timeline.
type Gap struct {
	TLI   uint32 `json:"timeline"`
	First string `json:"first_missing"`
	Last  string `json:"last_missing"`
	Count uint64 `json:"count"`
}

// Window is a stretch of time recovery can reach, along one timeline:
// from the end of a base backup to the last transaction (commit or abort)
// in the WAL archived without a gap after it. Recovery to a time stops at
// the first transaction that ended after that time, so ToTime, the time
// of that last transaction, bounds the time targets: they must be before
// it (--to-latest replays everything archived).
type Window struct {
	TLI      uint32    `json:"timeline"` // the timeline recovery follows
	Base     string    `json:"base_backup"`
	FromTime time.Time `json:"from_time"`
	FromLSN  LSN       `json:"from_lsn"`
	ToTime   time.Time `json:"to_time"` // LastTransaction's time; FromTime if there is none
	ToLSN    LSN       `json:"to_lsn"`  // the end of the last segment reachable
	LastWAL  string    `json:"last_wal"`
	// LastArchived is when LastWAL was archived.
	LastArchived time.Time `json:"last_wal_archived"`
	// LastTransaction is the last commit or abort after the base backup in
	// the reachable WAL; nil if there is none (or the WAL is unreadable,
	// listed in the report's problems).
	LastTransaction *XactEnd `json:"last_transaction"`
	// FirstMissing, if set, is the gap that ends the window: segments
	// after it are archived but unreachable from this base backup.
	FirstMissing string `json:"first_missing,omitempty"`

	path  []Segment // the segments recovery reads from the backup that gives the end
	floor LSN       // that backup's end
	sysID uint64    // its cluster
}

// XactEnd is a transaction's commit or abort record in the WAL.
type XactEnd struct {
	XID       uint32    `json:"xid"`
	Committed bool      `json:"committed"`
	Time      time.Time `json:"time"`
	LSN       LSN       `json:"lsn"`
}

func (x *XactEnd) String() string {
	what := "commit"
	if !x.Committed {
		what = "abort"
	}
	return fmt.Sprintf("%s of transaction %d at %s (%s)", what, x.XID, fmtStatusTime(x.Time), x.LSN)
}

func (w Window) String() string {
	end := "no transaction ended after the base backup: only --to-latest or --to-lsn"
	if w.LastTransaction != nil {
		end = "the last " + w.LastTransaction.String()
	}
	return fmt.Sprintf("%s (%s) to %s on timeline %d (%s; WAL through %s)", fmtStatusTime(w.FromTime), w.FromLSN, fmtStatusTime(w.ToTime), w.TLI, end, w.ToLSN)
}

// BaseBackup is a postgres snapshot as the status shows it.
type BaseBackup struct {
	ID            string    `json:"id"`
	ShortID       string    `json:"short_id"`
	SystemID      uint64    `json:"system_identifier,string"`
	ServerVersion int       `json:"server_version_num"`
	TLI           uint32    `json:"timeline"`
	StartLSN      LSN       `json:"start_lsn"`
	StopLSN       LSN       `json:"stop_lsn"`
	StartWAL      string    `json:"start_wal"`
	StopWAL       string    `json:"stop_wal"`
	StartTime     time.Time `json:"start_time"`
	StopTime      time.Time `json:"stop_time"`
	DatabaseSize  int64     `json:"database_size"`
	StoredSize    int64     `json:"stored_size"` // bytes this backup added to the repository
	CorruptPages  int       `json:"corrupt_pages,omitempty"`
	// MissingWAL names the first segment of the backup's own span that is
	// not in the repository: the backup cannot be restored.
	MissingWAL string `json:"missing_wal,omitempty"`

	Snapshot *snapshot.Snapshot `json:"-"`
	Info     *BackupInfo        `json:"-"`
}

// Status lists the WAL and base backups of repo and computes the windows
// recovery can reach.
func Status(ctx context.Context, repo StatusRepo) (*StatusReport, error) {
	return StatusWith(ctx, repo, StatusOptions{})
}

// StatusOptions make Status show the repository as it would be after a
// forget and prune: without some snapshots and WAL objects.
type StatusOptions struct {
	// Keep, if set, says which snapshots count; the others are left out.
	Keep func(*snapshot.Snapshot) bool
	// Without names WAL objects to leave out.
	Without map[string]bool
	// NoWALExpiry leaves the WAL expiry records unread (WALExpiry stays
	// empty, their damage out of Problems; ArchiveDamage reads them
	// itself): for a status that picks a base backup or shows windows,
	// which the records do not change, such as a restore's.
	NoWALExpiry bool
}

// loadExpiry reads the WAL expiry records: the boundaries, and the
// records that cannot be read (a problem each).
func (s *StatusReport) loadExpiry(ctx context.Context) error {
	_, floors, damaged, err := walexpiry.Records(ctx, s.repo)
	if err != nil {
		return err
	}
	s.floors, s.expiryDamaged, s.expiryLoaded = floors, damaged, true
	if bs := floors.Boundaries(); bs != nil {
		s.WALExpiry = bs
	}
	for _, d := range damaged {
		s.Problems = append(s.Problems, expiryDamaged(d))
	}
	return nil
}

// StatusWith is Status with the snapshots and WAL objects o leaves out
// ignored: what the window would be after they are gone.
func StatusWith(ctx context.Context, repo StatusRepo, o StatusOptions) (*StatusReport, error) {
	s := &StatusReport{
		Now:       time.Now().UTC(),
		Timelines: []*TimelineStatus{},
		Gaps:      []Gap{},
		Windows:   []Window{},
		segs:      map[uint32]map[uint64]time.Time{},
		hist:      map[uint32]*History{},
		repo:      repo,
	}
	var objs []backend.FileInfo
	err := repo.Backend().List(ctx, backend.WALFile, func(fi backend.FileInfo) error {
		if !o.Without[fi.Name] {
			objs = append(objs, fi)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing archived WAL: %w", err)
	}
	snaps, errs, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	if o.Keep != nil {
		snaps = slices.DeleteFunc(snaps, func(sn *snapshot.Snapshot) bool { return !o.Keep(sn) })
	}
	for _, e := range errs {
		s.Problems = append(s.Problems, e.Error())
	}
	s.WALExpiry = []walexpiry.Boundary{}
	if !o.NoWALExpiry {
		if err := s.loadExpiry(ctx); err != nil {
			return nil, err
		}
	}
	s.BaseBackups = []*BaseBackup{}
	for _, sn := range snaps {
		if sn.Kind != snapshot.KindPostgres {
			continue
		}
		bi, err := pgmeta.Info(sn)
		if err != nil {
			s.Problems = append(s.Problems, err.Error())
			continue
		}
		s.BaseBackups = append(s.BaseBackups, newBaseBackup(sn, bi))
	}
	slices.SortFunc(s.BaseBackups, func(a, b *BaseBackup) int {
		return cmp.Or(a.StopTime.Compare(b.StopTime), cmp.Compare(a.StopLSN, b.StopLSN))
	})
	s.SegmentSize = s.segmentSize(ctx, repo, objs)
	s.readObjects(ctx, repo, objs)
	s.findRanges()
	for _, b := range s.BaseBackups {
		s.checkBackup(b)
	}
	s.findWindows()
	for _, tli := range s.historiesMissing() {
		s.Problems = append(s.Problems, historyMissing(tli))
	}
	if err := s.forkProblems(ctx); err != nil {
		return nil, err
	}
	for i := range s.Windows {
		if err := s.windowEnd(ctx, &s.Windows[i]); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			s.Problems = append(s.Problems, fmt.Sprintf("window on timeline %d from base backup %s: %v", s.Windows[i].TLI, s.Windows[i].Base, err))
		}
	}
	return s, nil
}

func newBaseBackup(sn *snapshot.Snapshot, bi *BackupInfo) *BaseBackup {
	b := &BaseBackup{
		ID: sn.ID.String(), ShortID: sn.ID.Short(), SystemID: bi.SystemID, ServerVersion: bi.ServerVersion,
		TLI: bi.Timeline, StartLSN: bi.StartLSN, StopLSN: bi.StopLSN, StartWAL: bi.StartWAL, StopWAL: bi.StopWAL,
		StartTime: bi.StartTime, StopTime: bi.StopTime, DatabaseSize: bi.DatabaseSize, CorruptPages: len(bi.CorruptPages),
		Snapshot: sn, Info: bi,
	}
	if sn.Summary != nil {
		b.StoredSize = sn.Summary.DataStored
	}
	return b
}

// segmentSize is the WAL segment size of the cluster: what the newest
// base backup recorded, else what the newest segment's header says, else
// PostgreSQL's default.
func (s *StatusReport) segmentSize(ctx context.Context, repo StatusRepo, objs []backend.FileInfo) int64 {
	for i := len(s.BaseBackups) - 1; i >= 0; i-- {
		if n := s.BaseBackups[i].Info.WALSegmentSize; pgmeta.ValidSegmentSize(n) {
			return n
		}
	}
	newest := ""
	for _, o := range objs {
		if pgmeta.IsSegment(o.Name) && o.Name > newest {
			newest = o.Name
		}
	}
	if newest != "" {
		data, err := repo.LoadNamed(ctx, backend.WALFile, newest)
		if err == nil {
			if h, err := parseSegmentHeader(data); err == nil {
				return int64(h.SegSize)
			}
		}
	}
	return pgmeta.DefaultSegmentSize
}

// readObjects sorts the WAL objects into segments per timeline, partial
// segments and history files (which it reads).
func (s *StatusReport) readObjects(ctx context.Context, repo StatusRepo, objs []backend.FileInfo) {
	tls := map[uint32]*TimelineStatus{}
	tl := func(tli uint32) *TimelineStatus {
		if t, ok := tls[tli]; ok {
			return t
		}
		t := &TimelineStatus{TLI: tli, Ranges: []SegmentRange{}}
		tls[tli] = t
		return t
	}
	var newest time.Time
	for _, o := range objs {
		s.WALFiles++
		s.WALStored += o.Size
		switch {
		case pgmeta.IsSegment(o.Name):
			seg, err := pgmeta.ParseSegment(o.Name, s.SegmentSize)
			if err != nil {
				s.Problems = append(s.Problems, fmt.Sprintf("wal/%s: %v", o.Name, err))
				continue
			}
			if s.segs[seg.TLI] == nil {
				s.segs[seg.TLI] = map[uint64]time.Time{}
			}
			s.segs[seg.TLI][seg.No] = o.ModTime
			tl(seg.TLI).Segments++
			if o.ModTime.After(newest) || o.ModTime.Equal(newest) && o.Name > s.NewestWAL {
				newest, s.NewestWAL = o.ModTime, o.Name
			}
		case pgmeta.IsPartial(o.Name):
			seg, err := pgmeta.ParseSegment(o.Name[:24], s.SegmentSize)
			if err != nil {
				s.Problems = append(s.Problems, fmt.Sprintf("wal/%s: %v", o.Name, err))
				continue
			}
			t := tl(seg.TLI)
			t.Partial = append(t.Partial, o.Name)
		case pgmeta.IsHistory(o.Name):
			tli, _ := pgmeta.ParseHistoryFileName(o.Name)
			data, err := repo.LoadNamed(ctx, backend.WALFile, o.Name)
			if err != nil {
				s.Problems = append(s.Problems, fmt.Sprintf("timeline %d: %v", tli, err))
				continue
			}
			h, err := ParseHistory(tli, data)
			if err != nil {
				s.Problems = append(s.Problems, err.Error())
				continue
			}
			s.hist[tli] = h
			tl(tli).Parents = h.Parents
		case pgmeta.IsBackupHistory(o.Name):
		default:
			s.Problems = append(s.Problems, fmt.Sprintf("wal/%s is not a WAL file name: not written by nestguard", o.Name))
		}
	}
	if s.NewestWAL != "" {
		n := newest.UTC()
		s.NewestWALArchived = &n
		rpo := max(0, s.Now.Sub(n).Seconds())
		s.RPOSeconds = &rpo
	}
	for _, tli := range slices.Sorted(maps.Keys(tls)) {
		t := tls[tli]
		slices.Sort(t.Partial)
		s.Timelines = append(s.Timelines, t)
	}
}

// findRanges groups each timeline's segments into runs and names the gaps
// between them.
func (s *StatusReport) findRanges() {
	for _, t := range s.Timelines {
		nos := slices.Sorted(maps.Keys(s.segs[t.TLI]))
		for i := 0; i < len(nos); {
			j := i
			for j+1 < len(nos) && nos[j+1] == nos[j]+1 {
				j++
			}
			r := SegmentRange{
				First: Segment{TLI: t.TLI, No: nos[i]}.Name(s.SegmentSize), Last: Segment{TLI: t.TLI, No: nos[j]}.Name(s.SegmentSize),
				Count: nos[j] - nos[i] + 1, FirstArchived: s.segs[t.TLI][nos[i]].UTC(), LastArchived: s.segs[t.TLI][nos[j]].UTC(),
			}
			t.Ranges = append(t.Ranges, r)
			if j+1 < len(nos) {
				s.Gaps = append(s.Gaps, Gap{
					TLI: t.TLI, First: Segment{TLI: t.TLI, No: nos[j] + 1}.Name(s.SegmentSize),
					Last: Segment{TLI: t.TLI, No: nos[j+1] - 1}.Name(s.SegmentSize), Count: nos[j+1] - nos[j] - 1,
				})
			}
			i = j + 1
		}
	}
}

// history returns the history of timeline tli (none for a timeline
// without a history file, such as 1).
func (s *StatusReport) history(tli uint32) *History {
	if h, ok := s.hist[tli]; ok {
		return h
	}
	return &History{TLI: tli}
}

// latestFrom is the timeline recovery_target_timeline=latest follows from
// timeline tli: PostgreSQL probes for tli+1.history, tli+2.history, ...
// and takes the last one found.
func (s *StatusReport) latestFrom(tli uint32) uint32 {
	for {
		if _, ok := s.hist[tli+1]; !ok || tli+1 == 0 {
			return tli
		}
		tli++
	}
}

// forkError is checkFork's refusal: a fork both sides went on after.
type forkError struct{ msg string }

func (e *forkError) Error() string { return e.msg }

// newestPerSystem is the newest base backup (by stop time) of each
// database system, ordered by system identifier.
func (s *StatusReport) newestPerSystem() []*BaseBackup {
	newest := map[uint64]*BaseBackup{}
	for _, b := range s.BaseBackups { // by stop time: the last one wins
		newest[b.SystemID] = b
	}
	out := make([]*BaseBackup, 0, len(newest))
	for _, sys := range slices.Sorted(maps.Keys(newest)) {
		out = append(out, newest[sys])
	}
	return out
}

// forkProblems adds to Problems, for the newest base backup of each
// database system, a fork "latest" would follow though both sides went
// on after it (checkFork): a copy promoted and archiving into this
// repository while the original went on. A restore to the latest is
// refused then, but a running standby follows the newest timeline
// without asking (PostgreSQL's latest), so the status says it.
func (s *StatusReport) forkProblems(ctx context.Context) error {
	for _, b := range s.newestPerSystem() {
		tli := s.latestFrom(b.TLI)
		if !follows(b, s.history(tli)) {
			continue
		}
		err := s.checkFork(ctx, b, tli)
		var fe *forkError
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &fe):
			s.Problems = append(s.Problems, fmt.Sprintf("recovery to the latest from base backup %s: %v; a standby following latest (pg restore --standby) follows timeline %d", b.ShortID, err, tli))
		default:
			s.Problems = append(s.Problems, fmt.Sprintf("checking the timelines after base backup %s for a fork: %v", b.ShortID, err))
		}
	}
	return nil
}

// isLatest reports whether a --timeline spec (Target.Timeline) is
// latest: PostgreSQL's default, also when none is given.
func isLatest(spec string) bool { return spec == "" || spec == "latest" }

// checkLatest checks, for a --timeline spec of latest (or none), that
// recovery from b along tli, what latest resolved to, is what the archive
// holds: no later timeline cut off by a missing history file
// (checkHistoryChain), no fork where both sides went on (checkFork).
func (s *StatusReport) checkLatest(ctx context.Context, spec string, b *BaseBackup, tli uint32) error {
	if !isLatest(spec) {
		return nil
	}
	if err := s.checkHistoryChain(tli); err != nil {
		return err
	}
	return s.checkFork(ctx, b, tli)
}

// checkHistoryChain refuses "latest" resolved to tli when the repository
// shows a timeline that went on from tli, though tli+1's history file is
// not there: WAL of timeline tli+1, or a later timeline's history file
// that names tli as an ancestor. PostgreSQL looks for tli+1's history
// file, finds none, and stays on tli, missing what the later timelines
// hold (a history file deleted or never archived: hostile test, a
// restore without the rows of the timeline it lost). WAL of an unrelated
// later timeline (another database system in the repository) does not
// count.
func (s *StatusReport) checkHistoryChain(tli uint32) error {
	later := uint32(0)
	if len(s.segs[tli+1]) > 0 {
		later = tli + 1
	}
	for n, h := range s.hist {
		if n > tli && slices.ContainsFunc(h.Parents, func(p HistoryEntry) bool { return p.TLI == tli }) {
			later = max(later, n)
		}
	}
	if later == 0 {
		return nil
	}
	return fmt.Errorf("the repository holds WAL or history of timeline %d, later than timeline %d, but no history file %s: recovery to the latest timeline would stop on timeline %d and miss what the later timelines hold; archive the history file again (from the server's pg_wal, with 'nestguard pg archive-wal'), or restore with --timeline %d to stay on timeline %d",
		later, tli, pgmeta.HistoryFileName(tli+1), tli, tli, tli)
}

// targetTimeline resolves a --timeline value for recovery from b.
func (s *StatusReport) targetTimeline(spec string, b *BaseBackup) (uint32, error) {
	switch spec {
	case "", "latest":
		return s.latestFrom(b.TLI), nil
	case "current":
		return b.TLI, nil
	}
	n, err := strconv.ParseUint(spec, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("recovery target timeline %q: want latest, current or a timeline number", spec)
	}
	if _, ok := s.hist[uint32(n)]; !ok && uint32(n) != b.TLI {
		return 0, fmt.Errorf("recovery target timeline %d does not exist: the repository has no history file %s", n, pgmeta.HistoryFileName(uint32(n)))
	}
	return uint32(n), nil
}

// checkFork refuses to let "latest" follow timeline tli by its number
// when a timeline that tli's history left committed transactions after
// tli began: two servers wrote after the fork (a restored copy promoted
// and archiving into the same repository while the original went on), and
// which of them holds the data wanted is the user's call, not the
// timeline's number. PostgreSQL's recovery_target_timeline=latest would
// follow tli whatever the other one committed since. The times are read
// from the WAL (the record that began tli, the parent's last commit or
// abort after the switch point), not from when objects were stored, which
// a copy to another repository changes. A timeline left behind by a
// recovery to a point in the past, or by a failover, committed nothing
// after the new one began, and latest follows the new one as before. When
// tli's first record cannot be read (not archived yet), a parent that
// committed after the switch point is refused too: nothing says which
// came last.
func (s *StatusReport) checkFork(ctx context.Context, b *BaseBackup, tli uint32) error {
	h := s.history(tli)
	if len(h.Parents) == 0 || s.SegmentSize <= 0 {
		return nil
	}
	size := uint64(s.SegmentSize)
	for i, p := range h.Parents {
		child := tli
		if i+1 < len(h.Parents) {
			child = h.Parents[i+1].TLI
		}
		if p.SwitchPoint <= b.StopLSN {
			// A fork before the backup's end: recovery from it cannot
			// follow the parent, whatever the parent did since.
			continue
		}
		// The parent's WAL from the switch point on is what it wrote after
		// the fork: the rest of the segment that holds the switch point
		// and the segments after it (lastXact reads only records at or
		// after the switch point), the run that ends at its newest.
		firstAfter := uint64(p.SwitchPoint) / size
		var newest uint64
		found := false
		for no := range s.segs[p.TLI] {
			if no >= firstAfter && (!found || no > newest) {
				newest, found = no, true
			}
		}
		if !found {
			continue
		}
		var run []Segment
		for no := newest; no >= firstAfter; no-- {
			if _, ok := s.segs[p.TLI][no]; !ok {
				break
			}
			run = append([]Segment{{TLI: p.TLI, No: no}}, run...)
			if no == 0 {
				break
			}
		}
		began, exact, beganOK := s.timelineBegan(ctx, b.SystemID, child, p.SwitchPoint)
		last, err := s.lastXact(ctx, run, b.SystemID, p.SwitchPoint)
		if err != nil {
			return fmt.Errorf("reading timeline %d's WAL after its fork: %w", p.TLI, err)
		}
		if last == nil || beganOK && !last.Time.After(began) {
			// Nothing committed on the parent after the fork, or only
			// before the child began.
			continue
		}
		went := fmt.Sprintf("it archived WAL after the switch point, through segment %s, with its last transaction at %s",
			Segment{TLI: p.TLI, No: newest}.Name(s.SegmentSize), fmtStatusTime(last.Time))
		when := "its first record cannot be read, so nothing says which came last"
		if beganOK {
			when = "which began at " + fmtStatusTime(began)
			if !exact && last.Time.Before(began.Add(time.Second)) {
				when += " (its checkpoint gives whole seconds, and the last transaction is in that second: which came first cannot be told)"
			}
		}
		return &forkError{fmt.Sprintf("timeline %d branched from timeline %d at %s (%s), but timeline %d went on: %s. Two servers wrote after the fork (a restored copy promoted and archiving into this repository while the original went on), and \"latest\" would follow timeline %d by its number: say which with --timeline %d (the server that went on) or --timeline %d; 'nestguard pg status' shows both",
			child, p.TLI, p.SwitchPoint, when, p.TLI, went, tli, p.TLI, tli)}
	}
	return nil
}

// timelineBegan is when timeline tli began: the time of the first record
// on it at or after its switch point sp (timelineBegins, and whether that
// time is exact), read from its segment that holds sp; ok is false when
// that cannot be read.
func (s *StatusReport) timelineBegan(ctx context.Context, sysID uint64, tli uint32, sp LSN) (at time.Time, exact, ok bool) {
	no := uint64(sp) / uint64(s.SegmentSize)
	var path []Segment
	for n := no; n < no+2; n++ {
		if _, ok := s.segs[tli][n]; !ok {
			break
		}
		path = append(path, Segment{TLI: tli, No: n})
	}
	found := false
	err := s.scanPath(ctx, path, sysID, 0, func(rec *walRecord) bool {
		if rec.LSN < sp {
			return false
		}
		if t, when, ex, ok := rec.timelineBegins(); ok && t == tli {
			at, exact, found = when, ex, true
		}
		return true // only the first record at or after sp
	})
	if err != nil || !found {
		return time.Time{}, false, false
	}
	return at, exact, true
}

// follows reports whether recovery from b can follow history h: b's
// timeline must be in it, and b must end before h leaves that timeline.
func follows(b *BaseBackup, h *History) bool {
	span, ok := h.Includes(b.TLI)
	return ok && b.StopLSN <= span.End
}

// reach is how far WAL goes without a gap along a history.
type reach struct {
	path    []Segment // the segments read, in order
	last    Segment   // last segment reached (TLI: the timeline it came from)
	lastMod time.Time
	missing Segment // first segment not in the repository
	gap     bool    // segments after missing are archived
	done    bool    // the walk's goal was reached
}

// walk follows h from the segment holding start, as recovery reads WAL:
// for each segment number, the newest timeline of h that has begun by
// then. It stops at the first missing segment or when until says so.
func (s *StatusReport) walk(start LSN, h *History, until func(Segment, time.Time) bool) reach {
	spans, maxNo := s.pathSpans(h)
	segSize := uint64(s.SegmentSize)
	var r reach
	for no := uint64(start) / segSize; ; no++ {
		found := false
		for _, sp := range spans {
			if no < sp.begin || no > sp.end {
				continue
			}
			if mod, ok := s.segs[sp.tli][no]; ok {
				r.last, r.lastMod, found = Segment{TLI: sp.tli, No: no}, mod, true
				r.path = append(r.path, r.last)
				break
			}
		}
		if !found {
			r.missing = Segment{TLI: h.TLI, No: no}
			for _, sp := range spans {
				if no >= sp.begin && no <= sp.end {
					r.missing.TLI = sp.tli // the timeline recovery asks for first
					break
				}
			}
			r.gap = no < maxNo
			return r
		}
		if until != nil && until(r.last, r.lastMod) {
			r.done = true
			return r
		}
	}
}

// pathSpan is the segment numbers a timeline supplies to recovery along
// a history.
type pathSpan struct {
	tli        uint32
	begin, end uint64
}

// pathSpans are the spans of h's timelines, newest first, and the
// highest segment number archived in them.
func (s *StatusReport) pathSpans(h *History) (spans []pathSpan, maxNo uint64) {
	segSize := uint64(s.SegmentSize)
	for _, ts := range slices.Backward(h.Spans()) {
		sp := pathSpan{tli: ts.TLI, begin: uint64(ts.Begin) / segSize, end: ^uint64(0)}
		if ts.End != EndOfWAL {
			// An ancestor supplies only segments wholly before the switch:
			// its copy of the segment holding the switch point goes on
			// with its own history after it.
			if uint64(ts.End)/segSize == 0 {
				continue
			}
			sp.end = uint64(ts.End)/segSize - 1
		}
		spans = append(spans, sp)
		for no := range s.segs[sp.tli] {
			if no >= sp.begin && no <= sp.end && no > maxNo {
				maxNo = no
			}
		}
	}
	return spans, maxNo
}

// nextOnPath is the first segment archived along h after segment number
// no, and when it was stored.
func (s *StatusReport) nextOnPath(h *History, no uint64) (Segment, time.Time, bool) {
	spans, maxNo := s.pathSpans(h)
	for n := no + 1; n <= maxNo; n++ {
		for _, sp := range spans {
			if n < sp.begin || n > sp.end {
				continue
			}
			if mod, ok := s.segs[sp.tli][n]; ok {
				return Segment{TLI: sp.tli, No: n}, mod, true
			}
		}
	}
	return Segment{}, time.Time{}, false
}

// startSegment is the number of the segment b starts in.
func (s *StatusReport) startSegment(b *BaseBackup) uint64 {
	return uint64(b.StartLSN) / uint64(s.SegmentSize)
}

// stopSegment is the number of the last segment a backup needs.
func (s *StatusReport) stopSegment(b *BaseBackup) uint64 {
	return uint64(lastNeededByte(b.StopLSN, b.StartLSN)) / uint64(s.SegmentSize)
}

// spanWalk walks b's own span, from its start to its stop segment along
// its timeline: done when the WAL is complete there.
func (s *StatusReport) spanWalk(b *BaseBackup) reach {
	stop := s.stopSegment(b)
	return s.walk(b.StartLSN, s.history(b.TLI), func(seg Segment, _ time.Time) bool { return seg.No >= stop })
}

// SpanSegments names the WAL segments of base backup sn's own span,
// from its start to its stop: what recovery from it replays before the
// data directory is consistent. nil when sn is not a base backup of the
// report.
func (s *StatusReport) SpanSegments(sn *snapshot.Snapshot) []string {
	b := s.baseBackup(sn)
	if b == nil {
		return nil
	}
	r := s.spanWalk(b)
	names := make([]string, len(r.path))
	for i, seg := range r.path {
		names[i] = seg.Name(s.SegmentSize)
	}
	return names
}

// checkBackup notes whether the WAL of b's own span is complete.
func (s *StatusReport) checkBackup(b *BaseBackup) {
	if r := s.spanWalk(b); !r.done {
		b.MissingWAL = r.missing.Name(s.SegmentSize)
	}
}

// findWindows computes, for each usable base backup and each timeline
// recovery from it can follow (its own, and every timeline that branched
// off it later), how far recovery can go, and merges the overlapping
// stretches of each timeline.
func (s *StatusReport) findWindows() {
	var ws []Window
	tlis := slices.Sorted(maps.Keys(s.hist))
	for _, b := range s.BaseBackups {
		if b.MissingWAL != "" {
			continue
		}
		for _, tli := range timelinesFrom(b.TLI, tlis) {
			h := s.history(tli)
			if !follows(b, h) {
				continue
			}
			r := s.walk(b.StartLSN, h, nil)
			w := Window{
				TLI: tli, Base: b.ShortID, FromTime: b.StopTime.UTC(), FromLSN: b.StopLSN,
				ToTime: b.StopTime.UTC(), ToLSN: r.last.StartLSN(s.SegmentSize) + LSN(s.SegmentSize), LastWAL: r.last.Name(s.SegmentSize),
				LastArchived: r.lastMod.UTC(), path: r.path, floor: b.StopLSN, sysID: b.SystemID,
			}
			if r.gap {
				w.FirstMissing = r.missing.Name(s.SegmentSize)
			}
			ws = append(ws, w)
		}
	}
	slices.SortStableFunc(ws, func(a, b Window) int { return cmp.Or(cmp.Compare(a.TLI, b.TLI), cmp.Compare(a.FromLSN, b.FromLSN)) })
	for _, w := range ws {
		if n := len(s.Windows); n > 0 {
			cur := &s.Windows[n-1]
			if cur.TLI == w.TLI && w.FromLSN <= cur.ToLSN {
				if w.ToLSN > cur.ToLSN {
					cur.ToLSN, cur.LastWAL, cur.LastArchived, cur.FirstMissing, cur.path, cur.floor, cur.sysID = w.ToLSN, w.LastWAL, w.LastArchived, w.FirstMissing, w.path, w.floor, w.sysID
				}
				continue
			}
		}
		s.Windows = append(s.Windows, w)
	}
	slices.SortStableFunc(s.Windows, func(a, b Window) int { return cmp.Or(a.FromTime.Compare(b.FromTime), cmp.Compare(a.TLI, b.TLI)) })
}

// timelinesFrom lists a backup's timeline and the timelines that have a
// history file, once each.
func timelinesFrom(tli uint32, withHistory []uint32) []uint32 {
	out := []uint32{tli}
	for _, t := range withHistory {
		if t != tli {
			out = append(out, t)
		}
	}
	return out
}

// windowEnd finds the last transaction of w's WAL after its base backup.
func (s *StatusReport) windowEnd(ctx context.Context, w *Window) error {
	x, err := s.lastXact(ctx, w.path, w.sysID, w.floor)
	if err != nil {
		return err
	}
	if x != nil {
		w.LastTransaction, w.ToTime = x, x.Time
	}
	return nil
}

// describeWindows names the recoverable windows for error messages.
func (s *StatusReport) describeWindows() string {
	if len(s.Windows) == 0 {
		return "there is no recoverable window: no base backup has all its WAL in the repository"
	}
	parts := make([]string, len(s.Windows))
	for i, w := range s.Windows {
		parts[i] = w.String()
	}
	if len(parts) == 1 {
		return "the recoverable window is " + parts[0]
	}
	return "the recoverable windows are " + strings.Join(parts, "; ")
}

// ErrOutsideWindow is wrapped by CheckTarget's refusals.
var ErrOutsideWindow = errors.New("recovery target outside the recoverable window")

// CheckTarget picks the base backup a restore to target starts from, and
// refuses, naming the window, a target recovery cannot reach (see
// docs/postgres.md, "How a restore target is checked"):
//   - time: the newest backup that stopped before it, if the WAL from it
//     holds a transaction that ended after the time (recovery stops only
//     there);
//   - LSN: the newest that stopped at or before it, if the WAL reaches it;
//   - transaction id or restore point name: the newest backup that the
//     transaction's commit or abort record (the restore point's record)
//     follows in the WAL; recovery from a backup that ended after it
//     would never meet it;
//   - latest: the newest.
//
// Every backup must have the WAL from its start to its end.
func (s *StatusReport) CheckTarget(ctx context.Context, t Target) (*snapshot.Snapshot, error) {
	return s.choose(ctx, t, nil)
}

// CheckFrom checks that recovery from base backup sn (pg restore --snapshot)
// reaches target t, as CheckTarget does for the backup it picks.
func (s *StatusReport) CheckFrom(ctx context.Context, t Target, sn *snapshot.Snapshot) error {
	b := s.baseBackup(sn)
	if b == nil {
		return fmt.Errorf("snapshot %s is not a PostgreSQL base backup in this repository", sn.ID.Short())
	}
	_, err := s.choose(ctx, t, b)
	return err
}

// baseBackup is the base backup of snapshot sn, or nil when sn is not one
// of the report's.
func (s *StatusReport) baseBackup(sn *snapshot.Snapshot) *BaseBackup {
	i := slices.IndexFunc(s.BaseBackups, func(b *BaseBackup) bool { return b.Snapshot.ID == sn.ID })
	if i < 0 {
		return nil
	}
	return s.BaseBackups[i]
}

// recoveryWalk is base backup sn and the walk recovery from it along
// timeline spec (as Target.Timeline) takes, to the first missing
// segment; ok is false when sn is not a base backup of the report or
// recovery from it cannot follow spec.
func (s *StatusReport) recoveryWalk(sn *snapshot.Snapshot, spec string) (*BaseBackup, reach, bool) {
	b := s.baseBackup(sn)
	if b == nil {
		return nil, reach{}, false
	}
	tli, err := s.targetTimeline(spec, b)
	if err != nil {
		return nil, reach{}, false
	}
	h := s.history(tli)
	if !follows(b, h) {
		return nil, reach{}, false
	}
	return b, s.walk(b.StartLSN, h, nil), true
}

func (s *StatusReport) choose(ctx context.Context, t Target, only *BaseBackup) (*snapshot.Snapshot, error) {
	n := 0
	for _, set := range []bool{t.Time != nil, t.LSN != nil, t.XID != "", t.Name != "", t.Latest} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("give exactly one recovery target (time, LSN, transaction id, restore point name or latest); %d given", n)
	}
	if len(s.BaseBackups) == 0 {
		return nil, errors.New("no PostgreSQL base backup in the repository: take one with 'nestguard pg backup'")
	}
	cands := slices.Clone(s.BaseBackups)
	slices.Reverse(cands)
	if only != nil {
		cands = []*BaseBackup{only}
	}
	if t.XID != "" || t.Name != "" {
		return s.chooseByRecord(ctx, t, cands, only != nil)
	}
	var offTimeline *BaseBackup
	for _, b := range cands {
		if t.Time != nil && !b.StopTime.Before(*t.Time) || t.LSN != nil && b.StopLSN > *t.LSN {
			if only != nil {
				return nil, fmt.Errorf("%w: base backup %s ends at %s (%s), after %s: recovery cannot stop before a backup's end",
					ErrOutsideWindow, b.ShortID, fmtStatusTime(b.StopTime), b.StopLSN, t)
			}
			continue
		}
		tli, err := s.targetTimeline(t.Timeline, b)
		if err != nil {
			return nil, err
		}
		h := s.history(tli)
		if !follows(b, h) {
			offTimeline = b
			continue
		}
		if err := s.checkLatest(ctx, t.Timeline, b, tli); err != nil {
			return nil, err
		}
		if err := s.checkReach(ctx, b, h, t); err != nil {
			return nil, err
		}
		return b.Snapshot, nil
	}
	if offTimeline != nil {
		return nil, fmt.Errorf("%w: no base backup before %s lies on the history of the requested timeline (base backup %s is on timeline %d after the timeline branched): restore with --timeline current or a timeline number; %s",
			ErrOutsideWindow, t, offTimeline.ShortID, offTimeline.TLI, s.describeWindows())
	}
	oldest := s.BaseBackups[0]
	return nil, fmt.Errorf("%w: %s is before the end of the oldest base backup (%s, ended %s at %s): %s",
		ErrOutsideWindow, t, oldest.ShortID, fmtStatusTime(oldest.StopTime), oldest.StopLSN, s.describeWindows())
}

// checkReach makes sure the WAL from b reaches target t along h.
func (s *StatusReport) checkReach(ctx context.Context, b *BaseBackup, h *History, t Target) error {
	stop := s.stopSegment(b)
	until := func(seg Segment, _ time.Time) bool { return seg.No >= stop }
	switch {
	case t.Time != nil:
		until = nil // read below
	case t.LSN != nil:
		need := max(stop, uint64(*t.LSN)/uint64(s.SegmentSize))
		until = func(seg Segment, _ time.Time) bool { return seg.No >= need }
	case t.Latest:
		until = nil // all of it, without a gap
	}
	r := s.walk(b.StartLSN, h, until)
	if r.missing.No <= stop && !r.done {
		return fmt.Errorf("%w: base backup %s cannot be restored: WAL segment %s, which it needs to become consistent, is missing from the repository; %s",
			ErrOutsideWindow, b.ShortID, r.missing.Name(s.SegmentSize), s.describeWindows())
	}
	if t.Time != nil {
		return s.checkTime(ctx, b, r, *t.Time)
	}
	if t.Latest {
		if !r.gap {
			return nil
		}
		return fmt.Errorf("%w: WAL segment %s is missing from the repository: recovery from base backup %s would stop at %s (the end of %s) and skip the WAL archived after the gap; restore to a target before it, or from a base backup taken after it; %s",
			ErrOutsideWindow, r.missing.Name(s.SegmentSize), b.ShortID, r.last.StartLSN(s.SegmentSize)+LSN(s.SegmentSize), r.last.Name(s.SegmentSize), s.describeWindows())
	}
	if r.done && t.LSN != nil {
		return s.checkLSN(ctx, b, h, *t.LSN)
	}
	if r.done {
		return nil
	}
	missing := r.missing.Name(s.SegmentSize)
	if r.gap {
		return fmt.Errorf("%w: WAL segment %s is missing from the repository: recovery can reach at most %s (the end of %s) from base backup %s, not %s",
			ErrOutsideWindow, missing, r.last.StartLSN(s.SegmentSize)+LSN(s.SegmentSize), r.last.Name(s.SegmentSize), b.ShortID, t)
	}
	return fmt.Errorf("%w: %s is after the newest archived WAL (%s, archived %s): %s",
		ErrOutsideWindow, t, r.last.Name(s.SegmentSize), fmtStatusTime(r.lastMod), s.describeWindows())
}

// checkLSN makes sure a record begins at or after lsn in the WAL from b:
// recovery to an LSN stops at such a record, and a position after the last
// one archived (in the unused rest of a segment closed early, say) is never
// reached.
func (s *StatusReport) checkLSN(ctx context.Context, b *BaseBackup, h *History, lsn LSN) error {
	r := s.walk(b.StartLSN, h, nil)
	no := uint64(lsn) / uint64(s.SegmentSize)
	i := slices.IndexFunc(r.path, func(sg Segment) bool { return sg.No == no })
	found := false
	var last LSN
	err := s.scanPath(ctx, r.path, b.SystemID, max(i, 0), func(rec *walRecord) bool {
		last = rec.LSN
		found = rec.LSN >= lsn
		return found
	})
	if err != nil {
		return fmt.Errorf("checking LSN %s against the archived WAL: %w", lsn, err)
	}
	if found {
		return nil
	}
	return fmt.Errorf("%w: LSN %s is after the last record in the WAL archived after base backup %s (at %s, in %s): recovery to an LSN stops at a record at or after it; give an earlier LSN, or restore --to-latest; %s",
		ErrOutsideWindow, lsn, b.ShortID, last, r.last.Name(s.SegmentSize), s.describeWindows())
}

// checkTime makes sure recovery from b along r's path stops at time t:
// PostgreSQL stops before the first transaction that ended after t, so
// one must be in the WAL; without it, recovery would replay all WAL and
// fail ("recovery ended before configured recovery target was reached").
// A time after the last transaction is refused, not turned into
// --to-latest: the WAL not archived yet may hold transactions before t.
func (s *StatusReport) checkTime(ctx context.Context, b *BaseBackup, r reach, t time.Time) error {
	x, err := s.xactAfter(ctx, r.path, b.SystemID, b.StopLSN, t)
	if err != nil {
		return fmt.Errorf("checking time %s against the archived WAL: %w", fmtStatusTime(t), err)
	}
	if x != nil {
		return nil
	}
	last, err := s.lastXact(ctx, r.path, b.SystemID, b.StopLSN)
	if err != nil {
		return fmt.Errorf("checking time %s against the archived WAL: %w", fmtStatusTime(t), err)
	}
	reached := "no transaction ended in the WAL recovery can replay from base backup " + b.ShortID + " after its end"
	if last != nil {
		reached = "the last transaction recovery can replay from base backup " + b.ShortID + " is the " + last.String()
	}
	if r.gap {
		return fmt.Errorf("%w: WAL segment %s is missing from the repository, and %s: recovery to time %s stops only at a transaction that ended after it; give an earlier time, or restore from a base backup taken after the gap; %s",
			ErrOutsideWindow, r.missing.Name(s.SegmentSize), reached, fmtStatusTime(t), s.describeWindows())
	}
	return fmt.Errorf("%w: time %s is not before the last transaction in the archived WAL: %s (WAL archived through %s, %s), and recovery to a time stops only at a transaction that ended after it. The WAL written since may not be archived yet: give an earlier time, wait for more WAL (pg_switch_wal() on the server), or restore everything archived with --to-latest; %s",
		ErrOutsideWindow, fmtStatusTime(t), reached, r.last.Name(s.SegmentSize), fmtStatusTime(r.lastMod), s.describeWindows())
}

// chooseByRecord picks the base backup for a transaction id or restore
// point target by where its record is in the WAL: the newest backup that
// ended before the record (and whose WAL reaches it). Recovery from a
// backup checks the target from the backup's start: a record before the
// backup's end is never met (or stops recovery before it is consistent).
// Backups are tried newest first, and each segment is read at most once.
func (s *StatusReport) chooseByRecord(ctx context.Context, t Target, cands []*BaseBackup, from bool) (*snapshot.Snapshot, error) {
	match, err := recordMatcher(t)
	if err != nil {
		return nil, err
	}
	type found struct {
		lsn  LSN
		desc string
	}
	var (
		seen     []found // every match read, in WAL order
		scanTLI  uint32  // the target timeline the matches were read along
		scanFrom = ^uint64(0)
		inside   *BaseBackup // the newest backup the record was inside of
		inFound  found
		tried    []string
	)
	for _, b := range cands {
		tli, err := s.targetTimeline(t.Timeline, b)
		if err != nil {
			return nil, err
		}
		h := s.history(tli)
		if !follows(b, h) {
			if from {
				return nil, fmt.Errorf("%w: base backup %s is not on the history of timeline %d: restore with --timeline current or a timeline number", ErrOutsideWindow, b.ShortID, tli)
			}
			continue
		}
		if err := s.checkLatest(ctx, t.Timeline, b, tli); err != nil {
			return nil, err
		}
		if b.MissingWAL != "" {
			if from {
				return nil, fmt.Errorf("%w: base backup %s cannot be restored: WAL segment %s, which it needs to become consistent, is missing from the repository", ErrOutsideWindow, b.ShortID, b.MissingWAL)
			}
			continue
		}
		tried = append(tried, b.ShortID)
		if tli != scanTLI {
			seen, scanTLI, scanFrom = nil, tli, ^uint64(0)
		}
		r := s.walk(b.StartLSN, h, nil)
		startNo := s.startSegment(b)
		var firstAfter *found
		err = s.scanPath(ctx, r.path, b.SystemID, 0, func(rec *walRecord) bool {
			if uint64(rec.LSN)/uint64(s.SegmentSize) >= scanFrom {
				return true // read for a newer backup already
			}
			if desc, ok := match(rec); ok {
				seen = append(seen, found{rec.LSN, desc})
				if rec.LSN >= b.StartLSN {
					return true
				}
			}
			return false
		})
		if err != nil {
			return nil, fmt.Errorf("looking for %s in the archived WAL: %w", t, err)
		}
		scanFrom = min(scanFrom, startNo)
		slices.SortFunc(seen, func(a, b found) int { return cmp.Compare(a.lsn, b.lsn) })
		for i := range seen {
			if seen[i].lsn >= b.StartLSN {
				firstAfter = &seen[i]
				break
			}
		}
		pathEnd := LSN((r.last.No + 1) * uint64(s.SegmentSize))
		switch {
		case firstAfter == nil:
		case firstAfter.lsn >= pathEnd:
			// Read for a newer backup, beyond a gap this one cannot cross.
		case firstAfter.lsn >= b.StopLSN:
			return b.Snapshot, nil
		case inside == nil:
			inside, inFound = b, *firstAfter
		}
	}
	if len(tried) == 0 {
		return nil, fmt.Errorf("%w: no base backup has all its WAL in the repository on the history of the requested timeline: %s", ErrOutsideWindow, s.describeWindows())
	}
	if inside != nil {
		return nil, fmt.Errorf("%w: %s is the %s, during base backup %s (%s to %s), and no base backup ends before it: recovery from a backup checks the target only from its end; restore from an older base backup, or give an LSN or time target",
			ErrOutsideWindow, t, inFound.desc, inside.ShortID, inside.StartLSN, inside.StopLSN)
	}
	return nil, fmt.Errorf("%w: %s is not in the WAL archived after base backup %s (the WAL it can reach has no such record): it may be older than the backup, not have ended yet, or its WAL is not archived yet; %s",
		ErrOutsideWindow, t, strings.Join(tried, ", "), s.describeWindows())
}

// recordMatcher returns what recognizes target t's record: the commit or
// abort of a transaction (recovery_target_xid matches the top-level id,
// modulo 2^32 as PostgreSQL reads it), or a restore point by name.
func recordMatcher(t Target) (func(*walRecord) (string, bool), error) {
	if t.Name != "" {
		return func(rec *walRecord) (string, bool) {
			name, at, ok := rec.restorePoint()
			if !ok || name != t.Name {
				return "", false
			}
			return fmt.Sprintf("restore point made at %s (%s)", fmtStatusTime(at), rec.LSN), true
		}, nil
	}
	n, err := strconv.ParseUint(t.XID, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("transaction id %q: %w", t.XID, err)
	}
	xid := uint32(n)
	return func(rec *walRecord) (string, bool) {
		x, ok := rec.xact()
		if !ok || x.XID != xid {
			return "", false
		}
		return (&XactEnd{XID: x.XID, Committed: x.Commit, Time: x.Time, LSN: rec.LSN}).String(), true
	}, nil
}

func fmtStatusTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000Z") }

// RecoveryPath names the first n WAL segments that recovery from base
// backup sn along timeline spec (as Target.Timeline) replays, in the
// order it asks for them. Where the archive ends before, the last name is
// the first segment missing (a prefetch of it notes that it is absent).
// It is what a restore can fetch before the server starts.
func (s *StatusReport) RecoveryPath(sn *snapshot.Snapshot, spec string, n int) []string {
	_, r, ok := s.recoveryWalk(sn, spec)
	if !ok || n <= 0 {
		return nil
	}
	var names []string
	for _, seg := range r.path[:min(n, len(r.path))] {
		names = append(names, seg.Name(s.SegmentSize))
	}
	if len(r.path) < n {
		names = append(names, r.missing.Name(s.SegmentSize))
	}
	return names
}

// TimelineFor is the timeline recovery from base backup sn follows for
// spec (as Target.Timeline): "latest" resolved as PostgreSQL resolves it
// now. ok is false when sn is not a base backup of the report.
func (s *StatusReport) TimelineFor(sn *snapshot.Snapshot, spec string) (uint32, bool) {
	b := s.baseBackup(sn)
	if b == nil {
		return 0, false
	}
	tli, err := s.targetTimeline(spec, b)
	return tli, err == nil
}

// LastTransactionReached is the last commit or abort after base backup
// sn in the WAL that recovery from it along timeline spec (as
// Target.Timeline) reaches without a gap: the record a recovery to the
// latest WAL must replay. nil when there is none (or recovery from sn
// cannot follow spec).
func (s *StatusReport) LastTransactionReached(ctx context.Context, sn *snapshot.Snapshot, spec string) (*XactEnd, error) {
	b, r, ok := s.recoveryWalk(sn, spec)
	if !ok {
		return nil, nil
	}
	return s.lastXact(ctx, r.path, b.SystemID, b.StopLSN)
}

// ArchiveProblem is damage of the archived WAL as a whole that no single
// object shows: segments missing inside a recovery window, a history
// file missing from a timeline's chain.
type ArchiveProblem struct {
	Object string // the first missing object, as wal/<name>
	Error  string
}

// gapSettle is how long a segment archived after a gap must have been
// stored for the gap to count: WAL archived out of order (asynchronous
// archivers storing several at once) fills its gaps within seconds.
const gapSettle = time.Minute

// ArchiveDamage names what is missing from the archive as a whole:
//   - a segment missing from the WAL a kept base backup recovers through
//     to the latest (across the failovers since), after that base
//     backup's stop, with a later segment of the path of the same system
//     (by its header) stored over a minute ago: recovery from it stops at
//     the gap though WAL after it is archived. The base backups walked,
//     per database system, are the newest and the oldest one that starts
//     at or after the system's WAL expiry boundary (the WAL expiry
//     records, walexpiry.Records): prune removes WAL only before that
//     boundary, so a segment missing after it (and after the backup's
//     stop) was lost, not expired. WAL before the boundary is not
//     promised: it may be expired on purpose, with the base backups that
//     spanned it forgotten.
//   - WAL of a timeline whose history file is missing, after WAL of the
//     timeline before it (see checkHistoryChain).
//   - an expiry record that cannot be read: the boundary it set is
//     unknown, and WAL it accounts for may be reported missing.
//
// A segment after a gap that cannot be read does not count here (verify
// --read-data reports it as an object).
func (s *StatusReport) ArchiveDamage(ctx context.Context) ([]ArchiveProblem, error) {
	if s.SegmentSize <= 0 {
		return nil, nil
	}
	if !s.expiryLoaded {
		if err := s.loadExpiry(ctx); err != nil {
			return nil, err
		}
	}
	var out []ArchiveProblem
	for _, d := range s.expiryDamaged {
		obj := "expiry"
		if dr, ok := errors.AsType[*walexpiry.DamagedRecord](d); ok {
			obj += "/" + dr.ID.String()
		}
		out = append(out, ArchiveProblem{Object: obj, Error: expiryDamaged(d)})
	}
	seen := map[string]bool{}
	for _, newest := range s.newestPerSystem() {
		floor := uint64(0)
		if name, ok := s.floors[newest.SystemID]; ok {
			if seg, err := pgmeta.ParseSegment(name, s.SegmentSize); err == nil {
				floor = seg.No
			}
		}
		var oldest *BaseBackup // the oldest base backup the WAL after is kept for
		for _, b := range s.BaseBackups {
			if b.SystemID == newest.SystemID && s.startSegment(b) >= floor && (oldest == nil || b.StartLSN < oldest.StartLSN) {
				oldest = b
			}
		}
		for _, b := range []*BaseBackup{oldest, newest} {
			if b == nil {
				continue
			}
			ps, err := s.windowGaps(ctx, b, floor)
			if err != nil {
				return nil, err
			}
			for _, p := range ps {
				if !seen[p.Object] {
					seen[p.Object] = true
					out = append(out, p)
				}
			}
		}
	}
	for _, tli := range s.historiesMissing() {
		out = append(out, ArchiveProblem{Object: "wal/" + pgmeta.HistoryFileName(tli), Error: historyMissing(tli)})
	}
	return out, nil
}

// windowGaps names the gaps in the WAL recovery to the latest from b
// reads, after b's stop segment and at or after segment floor, the
// system's WAL expiry boundary (see ArchiveDamage): WAL before it is what
// prune recorded it might remove, and remains so when the base backups
// it was kept for are forgotten since (the newest kept base backup may
// then start below the boundary).
func (s *StatusReport) windowGaps(ctx context.Context, b *BaseBackup, floor uint64) ([]ArchiveProblem, error) {
	// The path recovery to the latest from b takes, across the failovers
	// since; b's own timeline if latest does not follow it.
	h := s.history(s.latestFrom(b.TLI))
	if !follows(b, h) {
		h = s.history(b.TLI)
	}
	stop := s.stopSegment(b)
	var out []ArchiveProblem
	for from := b.StartLSN; ; {
		r := s.walk(from, h, nil)
		if !r.gap {
			return out, nil
		}
		next, mod, ok := s.nextOnPath(h, r.missing.No)
		if !ok {
			return out, nil
		}
		from = next.StartLSN(s.SegmentSize)
		first := r.missing
		first.No = max(first.No, stop+1, floor) // in b's own span: its MissingWAL; below floor: expired
		if first.No >= next.No || s.Now.Sub(mod) < gapSettle {
			continue
		}
		name := next.Name(s.SegmentSize)
		data, err := s.repo.LoadNamed(ctx, backend.WALFile, name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if hd, err := parseSegmentHeader(data); err != nil || hd.SystemID != b.SystemID {
			continue
		}
		missing := first.Name(s.SegmentSize)
		out = append(out, ArchiveProblem{Object: "wal/" + missing, Error: fmt.Sprintf("WAL segment %s is missing (%d in all before %s, which is archived), %s",
			missing, next.No-first.No, name, s.gapLoss(b.SystemID, first.No, next.No))})
	}
}

// gapLoss says what the segments from first to before next, missing,
// cost the base backups of system sys, and what to do.
func (s *StatusReport) gapLoss(sys uint64, first, next uint64) string {
	var before, after *BaseBackup // the last that ends before the gap, the first that starts after it
	for _, b := range s.BaseBackups {
		if b.SystemID != sys {
			continue
		}
		if s.stopSegment(b) < first && (before == nil || b.StopLSN > before.StopLSN) {
			before = b
		}
		if s.startSegment(b) >= next && (after == nil || b.StartLSN < after.StartLSN) {
			after = b
		}
	}
	_, recorded := s.floors[sys]
	if after == nil {
		return fmt.Sprintf("after base backup %s, the newest of its database system: recovery from it stops there, and every later point in time is lost",
			before.ShortID)
	}
	hint := "; if a WAL expiry record under expiry/ was deleted since, prune again: it records its boundary anew"
	if !recorded {
		hint = "; if a prune removed it on purpose (one of a nestguard version before WAL expiry records, with --keep-pitr: WAL between base backups kept archive-only; or one whose WAL expiry record under expiry/ was deleted since: the repository has none for this system), run that prune again: it records where its expiry stops"
	}
	return fmt.Sprintf("inside the recoverable window of base backup %s, before base backup %s, and no WAL expiry record marks it removed on purpose (none sets a boundary after it): a restore from %s or an older base backup to a point after the gap fails, so the points in time from the gap to the end of %s (%s) are lost. Archive the segment again if a copy exists (the server's pg_wal, another repository: 'nestguard pg archive-wal'); if none does, forgetting the base backups before the gap and pruning moves the window's start past it%s",
		before.ShortID, after.ShortID, before.ShortID, after.ShortID, fmtStatusTime(after.StopTime), hint)
}

// expiryDamaged says that an expiry record cannot be read.
func expiryDamaged(d error) string {
	return d.Error() + ": which WAL prune removed on purpose is unknown, so WAL it removed may be reported missing; 'nestguard prune' records its boundaries again (restore the object from a copy of the repository if one holds it)"
}

// historyMissing says that timeline tli has WAL but no history file.
func historyMissing(tli uint32) string {
	return fmt.Sprintf("timeline %d has archived WAL but the repository has no history file %s: recovery from timeline %d to the latest stops before it; archive the history file again (from the server's pg_wal)", tli, pgmeta.HistoryFileName(tli), tli-1)
}

// historiesMissing are the timelines with archived WAL but no history
// file, after WAL of the timeline before them: recovery to the latest
// from the one before stops short of them.
func (s *StatusReport) historiesMissing() []uint32 {
	var out []uint32
	for _, tli := range slices.Sorted(maps.Keys(s.segs)) {
		if _, ok := s.hist[tli]; !ok && tli > 1 && len(s.segs[tli-1]) > 0 {
			out = append(out, tli)
		}
	}
	return out
}
