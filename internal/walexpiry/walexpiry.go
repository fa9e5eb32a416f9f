// Package walexpiry decides which archived PostgreSQL WAL objects a
// repository still needs once some base backups are forgotten: prune
// removes the others, forget keeps the base backup a --keep-pitr window
// starts at, and pg status and forget --dry-run show the window after. It
// knows PostgreSQL only through internal/pgmeta, as needs does, so prune
// does not import internal/pg.
//
// The rules, per database system (system identifier), over the base
// backups that are kept:
//
//   - The PITR window: every WAL object from the start segment of the
//     window's anchor on stays, so recovery can reach any point after the
//     anchor's end. Without a --keep-pitr duration the anchor is the
//     oldest kept base backup: nothing after its start goes. With one (D),
//     it is the newest kept base backup that ended at or before now-D, so
//     any point of the last D stays reachable; forget keeps that backup
//     whatever its policy says (Anchors). If no kept base backup ended that
//     early, the window starts at the oldest kept one (it is shorter than
//     D, and the plan says so).
//   - Archive-only base backups (kept ones that start before the anchor)
//     keep just the WAL from their start segment to their stop segment:
//     enough to restore them to their consistent point.
//   - Timeline history files are all kept: a few hundred bytes each, and
//     recovery reads the history of every timeline it follows.
//   - WAL file positions are compared by segment number whatever the
//     timeline: a segment of any timeline in a span that stays, stays.
//     That keeps the segments of a timeline that branched inside a span,
//     which recovery may read instead of its parent's.
//   - Without any kept base backup nothing is removed: a base backup
//     running now (the first of a cluster) may need any of it.
//   - Names that are not WAL file names are never removed.
//   - WAL archived within prune's grace period stays (ArchivedAfter): a
//     base backup still running, of a system with no kept base backup,
//     may need it.
//
// WAL object names do not say which system wrote them, so several systems
// in one repository share one namespace: an object goes only when no
// kept base backup of any system needs it.
package walexpiry

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// Options are what a plan depends on besides the base backups and WAL.
type Options struct {
	// KeepPITR is how far back from Now recovery to any point must stay
	// possible. Zero: from the end of the oldest kept base backup.
	KeepPITR policy.Duration
	// Now is the reference time of KeepPITR.
	Now time.Time
	// ArchivedAfter, when set, keeps every WAL object stored after it,
	// whatever the base backups need: a base backup running now, the first
	// of a second database system in the repository, needs WAL that no
	// kept base backup covers. Prune sets it to now less its grace period,
	// the bound it assumes on a running backup's length.
	ArchivedAfter time.Time
}

// Cutoff is the earliest time the window must reach: Now less KeepPITR.
// It is the zero time without KeepPITR.
func (o Options) Cutoff() time.Time {
	if o.KeepPITR.Zero() {
		return time.Time{}
	}
	return o.KeepPITR.Before(o.Now)
}

// Backup is a kept base backup as the plan sees it.
type Backup struct {
	Snapshot  id.ID     `json:"snapshot"`
	SystemID  uint64    `json:"system_identifier,string"`
	StartWAL  string    `json:"start_wal"`
	StopWAL   string    `json:"stop_wal"`
	StartTime time.Time `json:"start_time"`
	StopTime  time.Time `json:"stop_time"`
	// Role is RoleAnchor, RoleWindow or RoleArchiveOnly.
	Role string `json:"role"`

	start, stop uint64 // positions of StartWAL and StopWAL
}

// Roles of a kept base backup.
const (
	RoleAnchor      = "pitr-anchor"  // the PITR window starts at it
	RoleWindow      = "pitr"         // inside the PITR window
	RoleArchiveOnly = "archive-only" // before the window: its own WAL only
)

// System is the plan of one database system.
type System struct {
	ID uint64 `json:"system_identifier,string"`
	// Anchor is the base backup the PITR window starts at: recovery can
	// reach any point from its StopTime on.
	Anchor *Backup `json:"anchor"`
	// Short is set when KeepPITR was asked for and no kept base backup
	// ended at or before the cutoff: the window is shorter than asked.
	Short bool `json:"short,omitempty"`
	// Backups are the kept base backups, oldest first.
	Backups []*Backup `json:"base_backups"`
}

// Object is one WAL object and why it stays or goes.
type Object struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"archived"`
	Reason  string    `json:"reason"`
}

// Plan is which WAL objects stay and which go.
type Plan struct {
	KeepPITR policy.Duration `json:"keep_pitr,omitzero"`
	Cutoff   time.Time       `json:"cutoff,omitzero"`
	Systems  []*System       `json:"systems"`
	Keep     []Object        `json:"keep"`
	Remove   []Object        `json:"remove"`
	// Note, when set, says why nothing is removed.
	Note string `json:"note,omitempty"`
}

// RemoveBytes is the stored size of the objects the plan removes.
func (p *Plan) RemoveBytes() int64 {
	var n int64
	for _, o := range p.Remove {
		n += o.Size
	}
	return n
}

// RemoveNames is the set of names the plan removes.
func (p *Plan) RemoveNames() map[string]bool {
	m := make(map[string]bool, len(p.Remove))
	for _, o := range p.Remove {
		m[o.Name] = true
	}
	return m
}

// NoBaseBackup is the Note of a plan without any kept base backup.
const NoBaseBackup = "no PostgreSQL base backup is kept: no WAL is removed (a base backup running now may need any of it)"

// Compute decides which of the WAL objects wal stay, given the kept
// snapshots snaps (snapshots of other kinds are ignored). A kept base
// backup whose details cannot be read is an error: what it needs is
// unknown, so nothing may be removed.
func Compute(snaps []*snapshot.Snapshot, wal []backend.FileInfo, o Options) (*Plan, error) {
	p := &Plan{KeepPITR: o.KeepPITR, Cutoff: o.Cutoff(), Systems: []*System{}, Keep: []Object{}, Remove: []Object{}}
	bySys, err := backups(snaps)
	if err != nil {
		return nil, err
	}
	for _, sys := range slices.Sorted(maps.Keys(bySys)) {
		p.Systems = append(p.Systems, plan(sys, bySys[sys], p.Cutoff))
	}
	sorted := slices.Clone(wal)
	slices.SortFunc(sorted, func(a, b backend.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	if len(p.Systems) == 0 {
		if len(sorted) > 0 {
			p.Note = NoBaseBackup
		}
		for _, fi := range sorted {
			p.Keep = append(p.Keep, Object{fi.Name, fi.Size, fi.ModTime, NoBaseBackup})
		}
		return p, nil
	}
	for _, fi := range sorted {
		ob := Object{Name: fi.Name, Size: fi.Size, ModTime: fi.ModTime}
		var keep bool
		keep, ob.Reason = p.decide(fi.Name)
		if !keep && !o.ArchivedAfter.IsZero() && fi.ModTime.After(o.ArchivedAfter) {
			keep, ob.Reason = true, fmt.Sprintf("archived after %s, within prune's grace period: a base backup running now may need it", fmtTime(o.ArchivedAfter))
		}
		if keep {
			p.Keep = append(p.Keep, ob)
		} else {
			p.Remove = append(p.Remove, ob)
		}
	}
	return p, nil
}

// backups reads the kept base backups, per system, oldest start first.
func backups(snaps []*snapshot.Snapshot) (map[uint64][]*Backup, error) {
	out := map[uint64][]*Backup{}
	for _, sn := range snaps {
		if sn.Kind != snapshot.KindPostgres {
			continue
		}
		b, err := newBackup(sn)
		if err != nil {
			return nil, fmt.Errorf("%w: which WAL it needs is unknown, so no WAL can be removed (forget it, or repair it)", err)
		}
		out[b.SystemID] = append(out[b.SystemID], b)
	}
	for _, bs := range out {
		slices.SortFunc(bs, func(a, b *Backup) int {
			return cmp.Or(cmp.Compare(a.start, b.start), a.StopTime.Compare(b.StopTime), strings.Compare(a.Snapshot.String(), b.Snapshot.String()))
		})
	}
	return out, nil
}

func newBackup(sn *snapshot.Snapshot) (*Backup, error) {
	bi, err := pgmeta.Info(sn)
	if err != nil {
		return nil, err
	}
	stop := bi.StopWAL
	if stop == "" {
		stop = bi.StartWAL
	}
	b := &Backup{Snapshot: sn.ID, SystemID: bi.SystemID, StartWAL: bi.StartWAL, StopWAL: stop, StartTime: bi.StartTime, StopTime: bi.StopTime}
	var ok1, ok2 bool
	b.start, ok1 = position(bi.StartWAL)
	b.stop, ok2 = position(stop)
	if !ok1 || !ok2 || !pgmeta.IsSegment(bi.StartWAL) || !pgmeta.IsSegment(stop) {
		return nil, fmt.Errorf("base backup %s records no valid WAL span (start %q, stop %q)", sn.ID.Short(), bi.StartWAL, bi.StopWAL)
	}
	if b.stop < b.start {
		return nil, fmt.Errorf("base backup %s: its stop segment %s comes before its start segment %s", sn.ID.Short(), stop, bi.StartWAL)
	}
	return b, nil
}

// position is where a WAL file lies in the WAL, whatever its timeline:
// the log and segment parts of its name (characters 8 to 24) as one
// number, which orders segments as their numbers do for any segment size.
// Partial segments and backup history files lie in their segment.
func position(name string) (uint64, bool) {
	if len(name) < 24 || !pgmeta.IsWALFileName(name) || pgmeta.IsHistory(name) {
		return 0, false
	}
	n, err := strconv.ParseUint(name[8:24], 16, 64)
	return n, err == nil
}

// plan picks the anchor of one system's kept base backups (sorted by
// start) and gives each backup its role.
func plan(sys uint64, bs []*Backup, cutoff time.Time) *System {
	s := &System{ID: sys, Backups: bs, Anchor: bs[0]}
	if !cutoff.IsZero() {
		s.Short = true
		for _, b := range bs {
			if !b.StopTime.After(cutoff) && (s.Short || b.StopTime.After(s.Anchor.StopTime) ||
				b.StopTime.Equal(s.Anchor.StopTime) && b.start > s.Anchor.start) {
				s.Anchor, s.Short = b, false
			}
		}
	}
	for _, b := range bs {
		switch {
		case b == s.Anchor:
			b.Role = RoleAnchor
		case b.start < s.Anchor.start:
			b.Role = RoleArchiveOnly
		default:
			b.Role = RoleWindow
		}
	}
	return s
}

// Reasons an object stays whatever the base backups.
const (
	ReasonHistory = "timeline history file: all are kept (a few hundred bytes each; recovery reads the history of every timeline it follows)"
	ReasonNotWAL  = "not a WAL file name (not written by nestguard): left alone"
)

// decide says whether name stays, and why.
func (p *Plan) decide(name string) (bool, string) {
	if pgmeta.IsHistory(name) {
		return true, ReasonHistory
	}
	pos, ok := position(name)
	if !ok {
		return true, ReasonNotWAL
	}
	var why []string
	for _, s := range p.Systems {
		keep, reason := s.decide(pos, p.KeepPITR)
		if keep {
			return true, p.prefix(s, reason)
		}
		why = append(why, p.prefix(s, reason))
	}
	return false, strings.Join(why, "; ")
}

// prefix names the system in a reason when the repository has several.
func (p *Plan) prefix(s *System, reason string) string {
	if len(p.Systems) == 1 {
		return reason
	}
	return fmt.Sprintf("system %d: %s", s.ID, reason)
}

// decide says whether the WAL file at pos stays for system s.
func (s *System) decide(pos uint64, keep policy.Duration) (bool, string) {
	a := s.Anchor
	if pos >= a.start {
		what := "the PITR window"
		if !keep.Zero() {
			what = "the --keep-pitr " + keep.String() + " window"
		}
		return true, fmt.Sprintf("in %s: WAL from base backup %s (started %s) on", what, a.Snapshot.Short(), fmtTime(a.StartTime))
	}
	for _, b := range s.Backups {
		if b.Role == RoleArchiveOnly && pos >= b.start && pos <= b.stop {
			return true, fmt.Sprintf("WAL of archive-only base backup %s (%s to %s)", b.Snapshot.Short(), b.StartWAL, b.StopWAL)
		}
	}
	oldest := s.Backups[0]
	if pos < oldest.start {
		return false, fmt.Sprintf("older than the start of the oldest kept base backup, %s (%s, started %s)", oldest.Snapshot.Short(), oldest.StartWAL, fmtTime(oldest.StartTime))
	}
	return false, fmt.Sprintf("before the PITR window (from base backup %s, started %s) and outside the WAL of every archive-only base backup", a.Snapshot.Short(), fmtTime(a.StartTime))
}

// Anchor is the base backup a --keep-pitr window starts at, for one system.
type Anchor struct {
	SystemID uint64
	Snapshot *snapshot.Snapshot
}

// AnchorReason is what forget says of a base backup it keeps because a
// --keep-pitr window of keep starts at it.
func AnchorReason(keep policy.Duration) string {
	return "keep-pitr anchor: the --keep-pitr " + keep.String() + " window starts at this base backup"
}

// Anchors returns, per system, the base backup among snaps that a
// --keep-pitr window must start at: the newest that ended at or before
// o.Cutoff(). forget keeps it whatever its policy says, so that the
// WAL after it stays and recovery can reach any point since the cutoff.
// None without KeepPITR, and none for a system whose base backups all
// ended after the cutoff (its window starts at its oldest kept one). A
// base backup whose details cannot be read is passed over (prune refuses
// to remove WAL while it is kept).
func Anchors(snaps []*snapshot.Snapshot, o Options) []Anchor {
	cutoff := o.Cutoff()
	if cutoff.IsZero() {
		return nil
	}
	type cand struct {
		b  *Backup
		sn *snapshot.Snapshot
	}
	best := map[uint64]cand{}
	for _, sn := range snaps {
		if sn.Kind != snapshot.KindPostgres {
			continue
		}
		b, err := newBackup(sn)
		if err != nil || b.StopTime.After(cutoff) {
			continue
		}
		cur, ok := best[b.SystemID]
		if !ok || b.StopTime.After(cur.b.StopTime) || b.StopTime.Equal(cur.b.StopTime) && b.start > cur.b.start {
			best[b.SystemID] = cand{b, sn}
		}
	}
	var out []Anchor
	for _, sys := range slices.Sorted(maps.Keys(best)) {
		out = append(out, Anchor{SystemID: sys, Snapshot: best[sys].sn})
	}
	return out
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }
