// Package checker verifies a repository: that everything restoring each
// snapshot reads (internal/needs: its trees and data blobs, and for a
// PostgreSQL base backup its pg_control blob and WAL span) is indexed and
// present (structure), and, when asked, that the stored bytes still
// decrypt and hash to their IDs (read-back), every archived WAL object
// included: point-in-time recovery replays the WAL after a base backup's
// span too. Damage is reported by snapshot and file, and by WAL object,
// so an operator knows what is lost.
//
// A check takes no lock: backups may run meanwhile, and it must not take
// what they are writing for damage. It lists the snapshots first and only
// then WAL, index objects and packs: a snapshot is saved only once what it
// needs is durable, so those later listings cover every snapshot checked.
// Before a snapshot is reported damaged the index is read again.
//
// A storage that does not answer (backend.ErrUnavailable: throttled,
// down, the retries given up) is not damage: what it did not answer for
// is reported as not read (Report.Unread), the snapshots that need it as
// not fully checked, and nothing is reported damaged for it.
package checker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/candidates"
	"github.com/nestguard/nestguard/internal/hold"
	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/needs"
	"github.com/nestguard/nestguard/internal/pack"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// Options choose how deep to check.
type Options struct {
	ReadData bool
	// Percent of packs, and of WAL objects, to read back (0 < p <= 100);
	// 100 reads all.
	Percent float64
	// Workers bounds the packs, and the WAL objects, read back at once
	// (default DefaultWorkers).
	Workers int
	// ReadWAL reads WAL object name with ReadData as a restore reads it,
	// into memory from bufs (nil: the Go heap), and returns the size of
	// the WAL file. cmd/nestguard gives pg.ReadWAL, what restore-wal
	// hands PostgreSQL: authenticated, decompressed, a segment checked
	// whole. Nil: Repository.LoadNamedPooled (authenticated and
	// decompressed).
	ReadWAL func(ctx context.Context, name string, bufs *hugemem.Pool) (int, error)
	// ArchiveDamage, if set, names damage of the archived WAL as a whole
	// that no single object shows (segments missing inside a recovery
	// window, a history file missing from a timeline's chain); called
	// when the repository holds WAL objects. cmd/nestguard gives pg's
	// StatusReport.ArchiveDamage.
	ArchiveDamage func(ctx context.Context) ([]Problem, error)
}

// DefaultWorkers is how many packs verify reads back at once.
const DefaultWorkers = 4

// Problem is one finding.
type Problem struct {
	Object string `json:"object"` // pack/..., index/..., snapshot/...
	Error  string `json:"error"`
}

// SnapshotReport names what is damaged in one snapshot.
type SnapshotReport struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"` // when the backup started (RFC 3339 in JSON)
	Paths  []string  `json:"paths"`
	Files  []string  `json:"damaged_files"` // paths inside the snapshot
	Errors []string  `json:"errors,omitempty"`
}

// Report is the outcome of a check.
type Report struct {
	Snapshots int   `json:"snapshots"`
	Packs     int   `json:"packs"`
	PacksRead int   `json:"packs_read"`
	BlobsRead int64 `json:"blobs_read"`
	BytesRead int64 `json:"bytes_read"`
	// WAL objects (segments, partial segments, timeline and backup
	// history files): listed; read back with ReadData (a random Percent
	// of them, damaged ones included); of those, damaged or unreadable
	// (each is a problem too).
	WALObjects int `json:"wal_objects"`
	WALRead    int `json:"wal_read"`
	WALDamaged int `json:"wal_damaged"`
	// Packs no index object lists, by what they are: left by an
	// interrupted backup (the next backup indexes and reuses them); holding
	// only blobs indexed in other packs too (concurrent backups stored the
	// same data: harmless); written within RecentPack (a backup may be
	// writing them).
	UnindexedPacks int `json:"unindexed_packs"`
	DuplicatePacks int `json:"duplicate_packs"`
	RecentPacks    int `json:"recent_packs"`
	// CandidatePacks are packs no index object lists that a deletion-
	// candidate record names: a prune stopped between unindexing and
	// deleting them (the next prune deletes them, or indexes them again
	// if a snapshot needs them).
	CandidatePacks int `json:"candidate_packs"`
	// Problems are damage or failed reads; Warnings are damaged objects no
	// snapshot needs (nothing is lost).
	Problems         []Problem        `json:"problems"`
	Warnings         []Problem        `json:"warnings,omitempty"`
	DamagedSnapshots []SnapshotReport `json:"damaged_snapshots"`
	// Unread are the objects the storage did not answer for
	// (backend.ErrUnavailable): nothing is known of them, damaged or
	// not. UncheckedSnapshots are the snapshots needing one of them, not
	// reported damaged for it: their check is incomplete.
	Unread             []Problem `json:"unread,omitempty"`
	UncheckedSnapshots []string  `json:"unchecked_snapshots,omitempty"`
}

// RecentPack is how old an unindexed pack must be before it is taken for
// one an interrupted backup left: a running backup indexes its packs 16 at
// a time, and the last ones at its end.
const RecentPack = time.Hour

// OK reports whether nothing was found and everything was read.
func (r *Report) OK() bool { return r.Intact() && len(r.Unread) == 0 }

// Intact reports whether no damage was found: nothing is, or the only
// trouble is objects the storage did not answer for (Unread).
func (r *Report) Intact() bool { return len(r.Problems) == 0 && len(r.DamagedSnapshots) == 0 }

// Progress counters for a running check.
type Progress struct {
	PacksDone, BytesRead atomic.Int64
	PacksTotal           atomic.Int64
	WALDone, WALTotal    atomic.Int64
}

// Checker runs one check.
type Checker struct {
	repo *repository.Repository
	opt  Options
	P    Progress

	mu     sync.Mutex
	report Report
	// badCopies are the copies of blobs found damaged: blob -> pack ->
	// why. A blob is lost only when every pack holding it is here (see
	// blobState); packs read whole are in read.
	badCopies map[id.ID]map[id.ID]string
	read      map[id.ID]bool
	// copyProblems are damage found in packs, reported once every pack
	// is checked, so that each can say whether another pack still holds
	// what it lost (see reportCopies).
	copyProblems []copyProblem
	// cacheReported: the index cache's failure is in the report.
	cacheReported bool
	// pruneSeen: a prune's lock record was listed when the check began.
	pruneSeen bool
	// notIndexed: a snapshot needs a blob the index lacks.
	notIndexed atomic.Bool
	wal        map[string]int64  // WAL objects listed -> stored size
	walRead    map[string]string // WAL objects read back -> why they cannot be, or ""
	// unread: objects the storage did not answer for (in
	// Report.Unread); unreadPacks, unreadWAL: those packs and WAL
	// objects, whose contents are unknown, not lost.
	unread      map[string]bool
	unreadPacks map[id.ID]bool
	unreadWAL   map[string]bool
	unchecked   map[string]bool // snapshots in Report.UncheckedSnapshots
}

// New returns a checker for repo, which must be open with its index loaded.
func New(repo *repository.Repository, opt Options) *Checker {
	if opt.Workers <= 0 {
		opt.Workers = DefaultWorkers
	}
	if opt.Percent <= 0 || opt.Percent > 100 {
		opt.Percent = 100
	}
	if opt.ReadWAL == nil {
		opt.ReadWAL = func(ctx context.Context, name string, bufs *hugemem.Pool) (int, error) {
			plain, release, err := repo.LoadNamedPooled(ctx, backend.WALFile, name, bufs)
			if err != nil {
				return 0, err
			}
			defer release()
			return len(plain), nil
		}
	}
	return &Checker{repo: repo, opt: opt, badCopies: map[id.ID]map[id.ID]string{}, read: map[id.ID]bool{}, walRead: map[string]string{},
		unread: map[string]bool{}, unreadPacks: map[id.ID]bool{}, unreadWAL: map[string]bool{}, unchecked: map[string]bool{}}
}

// unavailable reports whether err is the storage not answering (see
// backend.ErrUnavailable): not damage.
func unavailable(err error) bool { return errors.Is(err, backend.ErrUnavailable) }

// problem records err for obj: damage, unless the storage did not
// answer (see unreadable).
func (c *Checker) problem(obj string, err error) {
	if unavailable(err) {
		c.unreadable(obj, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.Problems = append(c.report.Problems, Problem{Object: obj, Error: err.Error()})
}

func (c *Checker) warning(obj string, err error) {
	if unavailable(err) {
		c.unreadable(obj, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.Warnings = append(c.report.Warnings, Problem{Object: obj, Error: err.Error()})
}

// unreadable records, once per object, that the storage did not answer
// for obj: nothing is known of it.
func (c *Checker) unreadable(obj string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unread[obj] {
		return
	}
	c.unread[obj] = true
	c.report.Unread = append(c.report.Unread, Problem{Object: obj, Error: err.Error()})
}

// unreadPack records that the storage did not answer for pack p: the
// blobs in it are unknown, not lost.
func (c *Checker) unreadPack(p id.ID, err error) {
	c.mu.Lock()
	c.unreadPacks[p] = true
	c.mu.Unlock()
	c.unreadable("data/"+p.String(), err)
}

// walUnread records that the storage did not answer for WAL object name:
// what it holds is unknown, not lost.
func (c *Checker) walUnread(name string, err error) {
	c.unreadable("wal/"+name, err)
	c.mu.Lock()
	c.unreadWAL[name] = true
	c.mu.Unlock()
}

// uncheck records that snapshot sn could not be checked whole.
func (c *Checker) uncheck(sn *snapshot.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := sn.ID.String(); !c.unchecked[s] {
		c.unchecked[s] = true
		c.report.UncheckedSnapshots = append(c.report.UncheckedSnapshots, s)
	}
}

// copyProblem is damage found in pack: a problem of the whole pack (blob
// zero: missing, truncated, unreadable) losing blobs, or of one blob.
type copyProblem struct {
	pack  id.ID
	blob  id.ID
	err   error
	blobs []id.ID // a whole-pack problem: the blobs it loses
}

// markBad records that the copy of blob b in pack p cannot be read.
func (c *Checker) markBad(b, p id.ID, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.badCopies[b]
	if m == nil {
		m = map[id.ID]string{}
		c.badCopies[b] = m
	}
	if _, ok := m[p]; !ok {
		m[p] = why
	}
}

// packProblem records err for pack p, which loses the copies of blobs in
// it, to be reported by reportCopies; unless the storage did not answer
// for p, which loses nothing (see unreadPack).
func (c *Checker) packProblem(p id.ID, err error, blobs []id.ID, why string) {
	if unavailable(err) {
		c.unreadPack(p, err)
		return
	}
	for _, b := range blobs {
		c.markBad(b, p, why)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.copyProblems = append(c.copyProblems, copyProblem{pack: p, err: err, blobs: blobs})
}

// blobCopyProblem records that the copy of blob b in pack p is damaged.
func (c *Checker) blobCopyProblem(b, p id.ID, err error) {
	c.markBad(b, p, err.Error())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.copyProblems = append(c.copyProblems, copyProblem{pack: p, blob: b, err: err})
}

// otherCopy returns a pack other than p holding blob b whose copy is not
// known to be damaged, and whether this check read it back; ok is false
// when there is none.
func (c *Checker) otherCopy(b, p id.ID) (other id.ID, read, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.repo.Index().Locations(b) {
		if _, bad := c.badCopies[b][e.Pack]; e.Pack != p && !bad {
			return e.Pack, c.read[e.Pack], true
		}
	}
	return id.ID{}, false, false
}

// reportCopies reports the damage found in packs as problems: damage is
// damage even when another pack still holds what a damaged one lost (a
// blob two concurrent backups both stored), but the problem then says
// where the blob still reads from, and no snapshot is reported damaged
// for it.
func (c *Checker) reportCopies() {
	for _, cp := range c.copyProblems {
		name := "data/" + cp.pack.String()
		if cp.blobs == nil {
			msg := cp.err.Error()
			if other, read, ok := c.otherCopy(cp.blob, cp.pack); ok {
				msg += fmt.Sprintf("; blob %s %s, restores read it there", cp.blob.Short(), otherPack(other, read))
			}
			c.problem(name, errors.New(msg))
			continue
		}
		saved, read := 0, true
		for _, b := range cp.blobs {
			if _, r, ok := c.otherCopy(b, cp.pack); ok {
				saved++
				read = read && r
			}
		}
		err := cp.err
		switch {
		case saved == 0:
		case saved == len(cp.blobs):
			err = fmt.Errorf("%w; all %d blobs it holds %s, restores read them there", err, saved, otherPacks(read))
		default:
			err = fmt.Errorf("%w; %d of the %d blobs it holds %s", err, saved, len(cp.blobs), otherPacks(read))
		}
		c.problem(name, err)
	}
}

// otherPack says where a blob's other copy is: read back by this check,
// or only indexed.
func otherPack(p id.ID, read bool) string {
	if read {
		return "still reads from pack " + p.String()
	}
	return "is indexed in pack " + p.String() + " too (not read back by this check)"
}

// otherPacks is otherPack for several blobs.
func otherPacks(read bool) string {
	if read {
		return "still read from other packs"
	}
	return "are indexed in other packs too"
}

// reportFallbacks reports the packs that reads of this check (trees,
// also without ReadData) fell back from to another copy of a blob, unless
// already reported: a check never passes over damage it met.
func (c *Checker) reportFallbacks() {
	reported := map[id.ID]bool{}
	for _, cp := range c.copyProblems {
		reported[cp.pack] = true
	}
	for _, d := range c.repo.DamagedCopies() {
		if !reported[d.Pack] {
			c.problem("data/"+d.Pack.String(), fmt.Errorf("%w; blob %s %s, restores read it there", d.Err, d.Blob.Short(), otherPack(d.ReadFrom, true)))
		}
	}
}

// Run checks the repository and returns the report. An error means the
// check itself could not run (e.g. the storage is unreachable).
func (c *Checker) Run(ctx context.Context) (*Report, error) {
	c.pruneSeen = c.pruneRunning(ctx)
	snaps, unreadable, err := snapshot.ListFromStorage(ctx, c.repo)
	if err != nil {
		return nil, err
	}
	for _, e := range unreadable {
		obj := "snapshots"
		var u *snapshot.Unreadable
		if errors.As(e, &u) {
			obj = "snapshots/" + u.ID.String()
			if p := c.repo.GoodCopy(backend.SnapshotFile, u.ID); p != "" {
				e = fmt.Errorf("%w; this machine's cache holds the object as it was written, %s: copy it over the damaged object to repair it, rather than forgetting the snapshot", e, p)
			}
		}
		c.problem(obj, e)
	}
	c.report.Snapshots = len(snaps)
	if err := c.checkHolds(ctx); err != nil {
		return nil, err
	}
	if err := c.listWAL(ctx); err != nil {
		return nil, err
	}
	// Index objects written since the repository was opened.
	if err := c.repo.LoadIndex(ctx); err != nil {
		return nil, err
	}
	packs := map[id.ID]backend.FileInfo{}
	err = c.repo.Backend().List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if pid, err := id.Parse(fi.Name); err == nil {
			packs[pid] = fi
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing packs: %w", err)
	}
	idx := c.repo.Index()
	c.checkIndexObjects(packs)
	marked, err := c.checkCandidates(ctx)
	if err != nil {
		return nil, err
	}
	// Every location of every blob: a blob in two packs (concurrent
	// backups of the same data) is checked in both.
	byPack := map[id.ID][]index.Entry{}
	idx.EachLocation(func(e index.Entry) bool {
		byPack[e.Pack] = append(byPack[e.Pack], e)
		return true
	})
	c.checkIndexCache()
	indexed := idx.Packs()
	c.report.Packs = len(indexed)
	var toRead []id.ID
	for _, pid := range indexed {
		if c.checkPackSize(ctx, pid, packs, byPack[pid]) {
			toRead = append(toRead, pid)
		}
	}
	if err := c.classifyUnindexed(ctx, packs, indexed, marked); err != nil {
		return nil, err
	}

	if c.opt.ReadData {
		slices.SortFunc(toRead, func(a, b id.ID) int { return slices.Compare(a[:], b[:]) })
		if c.opt.Percent < 100 {
			toRead = c.sample(toRead)
		}
		c.P.PacksTotal.Store(int64(len(toRead)))
		if err := c.readPacks(ctx, toRead, byPack, packs); err != nil {
			return nil, err
		}
		if err := c.readWALObjects(ctx); err != nil {
			return nil, err
		}
	}
	c.reportCopies()

	if err := c.checkSnapshots(ctx, snaps); err != nil {
		return nil, err
	}
	c.suggestRepairIndex()
	if c.opt.ArchiveDamage != nil && len(c.wal) > 0 {
		ps, err := c.opt.ArchiveDamage(ctx)
		if err != nil {
			return nil, fmt.Errorf("checking the archived WAL as a whole: %w", err)
		}
		c.report.Problems = append(c.report.Problems, ps...)
	}
	c.checkIndexCache()
	c.reportFallbacks()
	return &c.report, nil
}

// checkHolds reports the legal hold records that cannot be read: what
// they hold is unknown, so forget removes nothing until they are
// restored.
func (c *Checker) checkHolds(ctx context.Context) error {
	_, bad, err := hold.List(ctx, c.repo)
	if err != nil {
		return fmt.Errorf("listing legal hold records: %w", err)
	}
	for _, e := range bad {
		obj, why := hold.Describe(e)
		if unavailable(e) {
			c.unreadable(obj, e)
			continue
		}
		c.problem(obj, fmt.Errorf("legal hold record cannot be read: %s; forget removes nothing until it reads: %s", why, hold.Remedy))
	}
	return nil
}

// checkIndexCache reports, once, that a part of the local index cache
// could not be read: blobs it holds looked absent, so the packs of some
// were not checked (nor read by --read-data) and snapshots needing them
// may be reported damaged for it. The check is incomplete, never clean.
func (c *Checker) checkIndexCache() {
	err := c.repo.Index().Err()
	if err == nil || c.cacheReported {
		return
	}
	c.cacheReported = true
	c.problem("index cache", fmt.Errorf("the local index cache could not be read whole, so not every pack's blobs were checked and blobs it holds may be reported missing: %w; run the check again", err))
}

// sample returns a random Percent of pids, at least one.
func (c *Checker) sample(pids []id.ID) []id.ID { return sample(pids, c.opt.Percent) }

// sample returns a random pct percent of xs (rounded up), at least one.
func sample[T any](xs []T, pct float64) []T {
	rand.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
	n := int(float64(len(xs))*pct/100 + 0.999)
	return xs[:min(len(xs), max(n, 1))]
}

// checkIndexObjects reports the index objects that cannot be read: as
// problems while packs no readable index object lists had to be read from
// their headers (restores do the same, with a warning), as warnings once
// every pack is listed by a readable one (superseded, see
// docs/format.md).
func (c *Checker) checkIndexObjects(packs map[id.ID]backend.FileInfo) {
	ies := c.repo.IndexErrors()
	if len(ies) == 0 {
		return
	}
	// Packs of a running backup count too: what the damaged object
	// listed cannot be told apart from them.
	uncovered := 0
	for _, pid := range c.repo.HeaderPacks() {
		if _, ok := packs[pid]; ok {
			uncovered++
		}
	}
	for _, ie := range ies {
		obj := "index/" + ie.ID.String()
		if uncovered > 0 {
			c.problem(obj, fmt.Errorf("%w; %d packs that no readable index object lists were read from their headers instead (nothing is lost if they read): run 'nestguard repair index'", ie.Err, uncovered))
		} else {
			c.warning(obj, fmt.Errorf("%w; superseded: every pack is listed by a readable index object ('nestguard repair index' deletes it where the storage allows)", ie.Err))
		}
	}
}

func recent(fi backend.FileInfo) bool {
	return !fi.ModTime.IsZero() && time.Since(fi.ModTime) < RecentPack
}

// checkPackSize checks that indexed pack pid exists and is long enough for
// its blobs, marking the blobs it loses. It reports whether to read it.
func (c *Checker) checkPackSize(ctx context.Context, pid id.ID, packs map[id.ID]backend.FileInfo, es []index.Entry) bool {
	fi, ok := packs[pid]
	if !ok {
		// Listed after the index was read, so it should be there: ask
		// once more before calling it missing.
		st, err := c.repo.Backend().Stat(ctx, backend.Handle{Type: backend.PackFile, Name: pid.String()})
		if err != nil {
			c.packProblem(pid, fmt.Errorf("pack is missing (%w): 'nestguard prune' takes it out of the index, so that backups store again the data their sources still have", err), blobIDs(es), "pack "+pid.Short()+" is missing")
			return false
		}
		fi = st
	}
	var end int64
	for _, e := range es {
		end = max(end, int64(e.Offset)+int64(e.Length))
	}
	if fi.Size < end {
		var lost []id.ID
		for _, e := range es {
			if int64(e.Offset)+int64(e.Length) > fi.Size {
				lost = append(lost, e.ID)
			}
		}
		c.packProblem(pid, fmt.Errorf("pack is truncated: %d bytes, index needs %d", fi.Size, end), lost, "pack "+pid.Short()+" is truncated")
	}
	return true
}

func blobIDs(es []index.Entry) []id.ID {
	out := make([]id.ID, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// checkCandidates reports the deletion-candidate records that are
// damaged, as warnings: no data is lost (no prune deletes the packs such
// a record names), and the next prune removes it. It returns the packs
// the readable records name.
func (c *Checker) checkCandidates(ctx context.Context) (map[id.ID]struct{}, error) {
	recs, damaged, err := candidates.List(ctx, c.repo)
	if err != nil {
		return nil, fmt.Errorf("listing prune's deletion-candidate records: %w", err)
	}
	for _, d := range damaged {
		var dm *candidates.Damaged
		if !errors.As(d, &dm) {
			continue
		}
		h := backend.Handle{Type: backend.CandidateFile, Name: dm.ID.String()}
		c.warning(h.String(), fmt.Errorf("damaged deletion-candidate record (no prune deletes the packs it names; the next prune removes it): %w", dm.Err))
	}
	return candidates.Packs(recs), nil
}

// classifyUnindexed counts the packs no index object lists by what they
// are (see Report), from their headers (PackHeader reads such a pack whole
// to authenticate its header); no snapshot needs them.
func (c *Checker) classifyUnindexed(ctx context.Context, packs map[id.ID]backend.FileInfo, indexed []id.ID, marked map[id.ID]struct{}) error {
	known := make(map[id.ID]bool, len(indexed))
	for _, p := range indexed {
		known[p] = true
	}
	idx := c.repo.Index()
	for pid, fi := range packs {
		if known[pid] {
			continue
		}
		if _, ok := marked[pid]; ok {
			c.report.CandidatePacks++
			continue
		}
		if recent(fi) {
			c.report.RecentPacks++
			continue
		}
		blobs, _, err := c.repo.PackHeader(ctx, pid)
		switch {
		case errors.Is(err, repository.ErrObjectCorrupted):
			c.warning("data/"+pid.String(), fmt.Errorf("unindexed pack, header unreadable (no snapshot uses it): %w", err))
			continue
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.problem("data/"+pid.String(), fmt.Errorf("reading the header of an unindexed pack: %w", err))
			continue
		}
		if !slices.ContainsFunc(blobs, func(b pack.Blob) bool { return !idx.Has(b.ID) }) {
			c.report.DuplicatePacks++
		} else {
			c.report.UnindexedPacks++
		}
	}
	return nil
}

// suggestRepairIndex says how to recover when snapshots lack blobs in
// the index while packs no index object lists hold blobs it lacks: index
// objects were lost (deleted, or a backup stopped before writing them),
// and 'repair index' indexes those packs from their headers.
func (c *Checker) suggestRepairIndex() {
	if c.report.UnindexedPacks == 0 || !c.notIndexed.Load() {
		return
	}
	c.problem("index", fmt.Errorf("snapshots need blobs that are not in the index, and %d packs no index object lists hold blobs the index lacks (index objects were lost, or a backup stopped before writing them): run 'nestguard repair index', which indexes those packs from their headers, then verify again", c.report.UnindexedPacks))
}

// listWAL lists the WAL objects, after the snapshots: a base backup's
// snapshot is saved only once its WAL is stored.
func (c *Checker) listWAL(ctx context.Context) error {
	c.wal = map[string]int64{}
	err := c.repo.Backend().List(ctx, backend.WALFile, func(fi backend.FileInfo) error {
		c.wal[fi.Name] = fi.Size
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing WAL: %w", err)
	}
	c.report.WALObjects = len(c.wal)
	return nil
}

// readWALObjects reads back every WAL object listed (a random Percent of
// them), Workers at once, whether or not a base backup's span holds it:
// recovery to a point after a base backup replays the segments after its
// span, and WAL archived before any base backup is what the first one
// (perhaps being taken now) will need.
func (c *Checker) readWALObjects(ctx context.Context) error {
	names := slices.Sorted(maps.Keys(c.wal))
	if len(names) == 0 {
		return nil
	}
	if c.opt.Percent < 100 {
		names = sample(names, c.opt.Percent)
	}
	c.P.WALTotal.Store(int64(len(names)))
	bufs := hugemem.Pool{Keep: c.opt.Workers}
	defer bufs.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opt.Workers)
	for _, name := range names {
		g.Go(func() error {
			_, err := c.readWAL(gctx, name, c.wal[name], &bufs)
			c.P.WALDone.Add(1)
			return err
		})
	}
	return g.Wait()
}

// readPacks reads packs whole, checks their hash and header, and opens
// every indexed blob in them.
// Each pack is read into memory reused from pack to pack (hugemem): a
// fresh buffer per pack faulted in every page it held.
func (c *Checker) readPacks(ctx context.Context, pids []id.ID, byPack map[id.ID][]index.Entry, packs map[id.ID]backend.FileInfo) error {
	bufs := hugemem.Pool{Keep: 2 * c.opt.Workers} // a pack and its decoded blobs each
	defer bufs.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opt.Workers)
	for _, pid := range pids {
		g.Go(func() error {
			err := c.readPack(gctx, pid, byPack[pid], packs[pid].Size, &bufs)
			c.P.PacksDone.Add(1)
			return err
		})
	}
	return g.Wait()
}

// readPack reads pack pid (size bytes as listed) whole and opens its
// blobs es.
func (c *Checker) readPack(ctx context.Context, pid id.ID, es []index.Entry, size int64, bufs *hugemem.Pool) error {
	name := "data/" + pid.String()
	rd, err := c.repo.Backend().Load(ctx, backend.Handle{Type: backend.PackFile, Name: pid.String()}, 0, 0)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.packProblem(pid, err, blobIDs(es), "pack "+pid.Short()+" unreadable")
		return nil
	}
	var buf []byte
	if size > 0 && size <= maxPooledPack {
		// As listed: a pack shorter now fails to read, a longer one
		// fails its hash below, as read whole it would.
		b := bufs.Get(int(size))
		defer bufs.Put(b)
		buf = b.Bytes()[:size]
		_, err = io.ReadFull(rd, buf)
	} else {
		buf, err = io.ReadAll(rd)
	}
	rd.Close()
	if err != nil {
		c.packProblem(pid, fmt.Errorf("reading: %w", err), blobIDs(es), "pack "+pid.Short()+" unreadable")
		return nil
	}
	c.mu.Lock()
	c.read[pid] = true
	c.report.PacksRead++
	c.report.BytesRead += int64(len(buf))
	c.mu.Unlock()
	c.P.BytesRead.Add(int64(len(buf)))
	if c.repo.ObjectID(buf) != pid {
		c.problem(name, errors.New("pack content does not match its name (bytes changed on storage)"))
	}
	// Pooled memory for the decoded blobs, unless the index claims a size
	// no blob may have (it is untrusted): OpenBlob then fails on its own.
	var dec []byte
	if raw := maxRaw(es); raw > 0 && raw <= repository.MaxBlobSize {
		b := bufs.Get(raw)
		defer bufs.Put(b)
		dec = b.Bytes()[:0]
	}
	for _, e := range es {
		end := int64(e.Offset) + int64(e.Length)
		if end > int64(len(buf)) {
			c.markBad(e.ID, pid, "pack "+pid.Short()+" is truncated")
			continue
		}
		_, err = c.repo.OpenBlob(e, buf[e.Offset:end], &dec)
		c.mu.Lock()
		c.report.BlobsRead++
		c.mu.Unlock()
		if err != nil {
			c.blobCopyProblem(e.ID, pid, err)
		}
	}
	return nil
}

// maxRaw is the largest decoded size among es.
func maxRaw(es []index.Entry) int {
	n := 0
	for _, e := range es {
		n = max(n, int(e.RawLength))
	}
	return n
}

// maxPooledPack bounds the packs read into pooled memory; a larger one
// (listed larger than any pack is written: 1 GiB at most, and one blob
// over) is read into the heap as it comes.
const maxPooledPack = 2 << 30

// checkSnapshots checks what each snapshot needs. A snapshot found damaged
// is checked again after reading the index objects written since: a check
// never reports as missing what a concurrent writer made durable.
func (c *Checker) checkSnapshots(ctx context.Context, snaps []*snapshot.Snapshot) error {
	reports, err := c.checkAll(ctx, snaps)
	if err != nil {
		return err
	}
	var damaged []*snapshot.Snapshot
	for i, sn := range snaps {
		if reports[i] != nil {
			damaged = append(damaged, sn)
		}
	}
	if len(damaged) == 0 {
		return nil
	}
	if err := c.repo.LoadIndex(ctx); err != nil {
		return err
	}
	if reports, err = c.checkAll(ctx, damaged); err != nil {
		return err
	}
	for _, r := range reports {
		if r != nil {
			c.report.DamagedSnapshots = append(c.report.DamagedSnapshots, *r)
		}
	}
	return nil
}

// checkAll checks everything restoring each of snaps reads
// (internal/needs) and returns, for each, what is damaged, or nil. The
// snapshots' trees are read once, together (tree.Visitor), since they
// share most of them.
func (c *Checker) checkAll(ctx context.Context, snaps []*snapshot.Snapshot) ([]*SnapshotReport, error) {
	ns := make([]*needs.Needs, len(snaps))
	errs := make([]error, len(snaps))
	var roots []id.ID
	for i, sn := range snaps {
		if ns[i], errs[i] = needs.Of(sn); errs[i] == nil {
			roots = append(roots, ns[i].Tree)
		}
	}
	d, err := c.walkTrees(ctx, roots)
	if err != nil {
		return nil, err
	}
	reports := make([]*SnapshotReport, len(snaps))
	for i, sn := range snaps {
		if errs[i] != nil {
			reports[i] = snapshotReport(sn, nil, []string{errs[i].Error()})
			continue
		}
		if reports[i], err = c.checkSnapshot(ctx, sn, ns[i], d); err != nil {
			return nil, err
		}
	}
	return reports, nil
}

func snapshotReport(sn *snapshot.Snapshot, files, errs []string) *SnapshotReport {
	if len(files) == 0 && len(errs) == 0 {
		return nil
	}
	return &SnapshotReport{
		ID: sn.ID.String(), Time: sn.Time, Paths: sn.Paths,
		Files: files, Errors: errs,
	}
}

// checkSnapshot returns what is damaged of what sn needs, or nil; d holds
// what was found in its trees.
func (c *Checker) checkSnapshot(ctx context.Context, sn *snapshot.Snapshot, need *needs.Needs, d *damage) (*SnapshotReport, error) {
	files, errs := c.checkTree(ctx, d, need.Tree, "/")
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, b := range need.Blobs {
		if why, _ := c.blobState(b.ID); why != "" {
			errs = append(errs, fmt.Sprintf("%s blob %s: %s", b.What, b.ID.Short(), why))
		}
	}
	if walErrs := c.checkWAL(ctx, need.WAL); len(walErrs) > 0 && !c.gone(ctx, backend.SnapshotFile, sn.ID.String()) {
		// WAL missing for a snapshot forgotten meanwhile was removed by
		// a prune that no longer saw it: not damage.
		errs = append(errs, walErrs...)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := snapshotReport(sn, files, errs)
	if r == nil && c.incomplete(need, d) {
		c.uncheck(sn)
	}
	return r, nil
}

// incomplete reports whether some of what need holds could not be
// checked because the storage did not answer for it.
func (c *Checker) incomplete(need *needs.Needs, d *damage) bool {
	if d.unknown(need.Tree) || slices.ContainsFunc(need.Blobs, func(b needs.Blob) bool { _, u := c.blobState(b.ID); return u }) {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(need.WAL, func(name string) bool { return c.unreadWAL[name] })
}

// blobState says why blob b cannot be read, or "": a blob is lost when
// it is not indexed or every copy of it is damaged or missing; and else
// whether it is unknown: its only copies not known bad are in packs the
// storage did not answer for.
func (c *Checker) blobState(b id.ID) (why string, unknown bool) {
	if _, err := c.repo.Index().Find(b); err != nil {
		c.missing(err)
		return err.Error(), false
	}
	why, _, unknown = c.copies(b)
	return why, unknown
}

// missing notes err when it is a blob missing from the index (see
// suggestRepairIndex).
func (c *Checker) missing(err error) {
	if errors.Is(err, index.ErrNotIndexed) {
		c.notIndexed.Store(true)
	}
}

// copies reports whether every copy of indexed blob b is damaged or
// missing (lost, and why), or, when no copy is known good, whether one is
// in a pack the storage did not answer for (unknown: not lost).
func (c *Checker) copies(b id.ID) (why string, lost, unknown bool) {
	ls := c.repo.Index().Locations(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	var whys []string
	for _, e := range ls {
		if why, bad := c.badCopies[b][e.Pack]; bad {
			whys = append(whys, why)
			continue
		}
		if !c.unreadPacks[e.Pack] {
			return "", false, false
		}
		unknown = true
	}
	if unknown {
		return "", false, true
	}
	return strings.Join(whys, "; "), len(whys) > 0, false
}

// checkWAL checks that every WAL segment of a base backup's span is stored
// and, where it was read back (ReadData, a random Percent of the WAL
// objects: readWALObjects), that it reads.
func (c *Checker) checkWAL(ctx context.Context, segs []string) []string {
	var errs []string
	for _, name := range segs {
		if _, ok := c.wal[name]; !ok {
			// Listed after the snapshot, so it should be there: ask once
			// more before calling it missing.
			fi, err := c.repo.Backend().Stat(ctx, backend.Handle{Type: backend.WALFile, Name: name})
			if unavailable(err) {
				c.walUnread(name, err)
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Sprintf("WAL segment wal/%s is missing (%v): the base backup cannot be made consistent", name, err))
				continue
			}
			c.wal[name] = fi.Size
			if c.opt.ReadData && (c.opt.Percent >= 100 || rand.Float64()*100 < c.opt.Percent) {
				if _, err := c.readWAL(ctx, name, fi.Size, nil); err != nil {
					return errs // the check was stopped: checkSnapshot returns its error
				}
			}
		}
		c.mu.Lock()
		why := c.walRead[name]
		c.mu.Unlock()
		if why != "" {
			errs = append(errs, fmt.Sprintf("WAL segment wal/%s cannot be read: %s", name, why))
		}
	}
	return errs
}

// readWAL reads back WAL object name (size bytes stored) once, with
// Options.ReadWAL, into memory from bufs, reports it as a problem if it
// cannot be read, and returns why, or "". An error means the check was
// stopped.
func (c *Checker) readWAL(ctx context.Context, name string, size int64, bufs *hugemem.Pool) (string, error) {
	c.mu.Lock()
	why, done := c.walRead[name]
	c.mu.Unlock()
	if done {
		return why, nil
	}
	_, err := c.opt.ReadWAL(ctx, name, bufs)
	if err != nil && ctx.Err() != nil {
		return "", ctx.Err()
	}
	if errors.Is(err, fs.ErrNotExist) && c.gone(ctx, backend.WALFile, name) && (c.pruneSeen || c.pruneRunning(ctx)) {
		// Listed, then removed while a prune ran (its lock record was
		// there when the check began or is now): it removes WAL that
		// no base backup needs. Not damage; a snapshot that still
		// needs it is reported by checkWAL. Removed with no prune
		// seen, it is reported below.
		c.mu.Lock()
		defer c.mu.Unlock()
		why = "removed while the check ran"
		c.walRead[name] = why
		return why, nil
	}
	if unavailable(err) {
		// Not read: unknown, not damaged (see checkWAL).
		c.walUnread(name, err)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.walRead[name] = ""
		return "", nil
	}
	c.P.BytesRead.Add(size)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.WALRead++
	c.report.BytesRead += size
	if err != nil {
		// The problem names the object already.
		why = strings.TrimPrefix(err.Error(), "wal/"+name+": ")
		if errors.Is(err, fs.ErrNotExist) {
			why = "listed, but gone when read, and no prune was seen running: " + why
		}
		c.report.WALDamaged++
		what, then := walKind(name)
		c.report.Problems = append(c.report.Problems, Problem{Object: "wal/" + name, Error: what + " cannot be read: " + why + then})
	}
	c.walRead[name] = why
	return why, nil
}

// gone reports whether object name of type t is not in the repository
// now (asked again after the check listed it, or a read found it
// missing): a snapshot forgotten, a WAL object removed meanwhile.
func (c *Checker) gone(ctx context.Context, t backend.FileType, name string) bool {
	_, err := c.repo.Backend().Stat(ctx, backend.Handle{Type: t, Name: name})
	return errors.Is(err, fs.ErrNotExist)
}

// pruneRunning reports whether a prune's lock record is in the
// repository (prune removes WAL only while it holds one): a WAL object
// that vanishes during the check is then not damage.
func (c *Checker) pruneRunning(ctx context.Context) bool {
	found := false
	err := c.repo.Backend().List(ctx, backend.LockFile, func(backend.FileInfo) error {
		found = true
		return errStopList
	})
	return found || err != nil && !errors.Is(err, errStopList)
}

var errStopList = errors.New("stop listing")

// walKind names what WAL object name holds, and what its loss means,
// for a problem.
func walKind(name string) (what, then string) {
	switch {
	case pgmeta.IsSegment(name):
		return "WAL segment " + name, "; recovery cannot replay through it (restore-wal refuses it)"
	case pgmeta.IsPartial(name):
		return "partial WAL segment " + name, ""
	case pgmeta.IsHistory(name):
		tli, _ := pgmeta.ParseHistoryFileName(name)
		return "timeline history file " + name, fmt.Sprintf("; recovery cannot follow timeline %d", tli)
	case pgmeta.IsBackupHistory(name):
		return "backup history file " + name, ""
	}
	return "WAL object " + name, ""
}

// damage is what the trees of the snapshots being checked hold, per
// distinct tree: enough to tell which trees have damage at or below them
// without keeping the trees.
type damage struct {
	mu    sync.Mutex
	trees map[id.ID]*treeDamage
	// rel memoizes relPaths: snapshots share most trees.
	rel map[id.ID][2][]string
}

type treeDamage struct {
	lost     string // why the tree cannot be read, or ""
	files    bool   // a file directly in the tree is damaged
	subtrees []id.ID
	below    *bool // damage at or below the tree, once known
	// unknown: the storage did not answer for the tree; unknownFiles:
	// for a blob of a file directly in it; unknownBelow: either, at or
	// below the tree, once known.
	unknown, unknownFiles bool
	unknownBelow          *bool
}

// walkTrees reads every distinct tree below roots once and records what
// is damaged in each.
func (c *Checker) walkTrees(ctx context.Context, roots []id.ID) (*damage, error) {
	d := &damage{trees: make(map[id.ID]*treeDamage), rel: make(map[id.ID][2][]string)}
	set := func(tid id.ID, td *treeDamage) {
		d.mu.Lock()
		d.trees[tid] = td
		d.mu.Unlock()
	}
	v := tree.Visitor[struct{}]{
		Enter: func(tid id.ID, _ struct{}) bool {
			why, lost, unknown := c.copies(tid)
			switch {
			case lost:
				set(tid, &treeDamage{lost: why})
			case unknown:
				// Its pack was not read: loading it would wait on
				// the storage again.
				set(tid, &treeDamage{unknown: true})
			}
			return !lost && !unknown
		},
		Visit: func(_ context.Context, t *tree.Tree, _ struct{}) (func(*tree.Node) struct{}, error) {
			td := &treeDamage{}
			for _, n := range t.Nodes {
				switch {
				case n.Type == tree.Dir:
					td.subtrees = append(td.subtrees, *n.Subtree)
				case n.Type == tree.File && !(td.files && td.unknownFiles):
					damaged, unknown := c.fileState(n)
					td.files = td.files || damaged
					td.unknownFiles = td.unknownFiles || unknown
				}
			}
			set(t.ID, td)
			return nil, nil
		},
		LoadError: func(tid id.ID, _ struct{}, err error) error {
			if unavailable(err) {
				if e, ok := c.repo.Index().Lookup(tid); ok {
					c.unreadPack(e.Pack, err)
				} else {
					c.unreadable("tree "+tid.String(), err)
				}
				set(tid, &treeDamage{unknown: true})
				return nil
			}
			c.missing(err)
			set(tid, &treeDamage{lost: err.Error()})
			return nil
		},
	}
	if err := v.Run(ctx, c.repo, tree.Roots(roots...)); err != nil {
		return nil, err
	}
	return d, nil
}

// fileDamaged reports whether a blob of file n is damaged or not indexed.
func (c *Checker) fileDamaged(n *tree.Node) bool {
	damaged, _ := c.fileState(n)
	return damaged
}

// fileState reports whether a blob of file n is damaged or not indexed,
// and else whether one is unknown (see blobState).
func (c *Checker) fileState(n *tree.Node) (damaged, unknown bool) {
	for _, b := range n.Content {
		why, u := c.blobState(b)
		if why != "" {
			return true, false
		}
		unknown = unknown || u
	}
	return false, unknown
}

// damaged reports whether anything at or below tree tid is damaged.
func (d *damage) damaged(tid id.ID) bool {
	td := d.trees[tid]
	if td == nil {
		return false
	}
	if td.below == nil {
		b := td.lost != "" || td.files || slices.ContainsFunc(td.subtrees, d.damaged)
		td.below = &b
	}
	return *td.below
}

// unknown reports whether the storage did not answer for something at or
// below tree tid (see treeDamage).
func (d *damage) unknown(tid id.ID) bool {
	td := d.trees[tid]
	if td == nil {
		return false
	}
	if td.unknownBelow == nil {
		b := td.unknown || td.unknownFiles || slices.ContainsFunc(td.subtrees, d.unknown)
		td.unknownBelow = &b
	}
	return *td.unknownBelow
}

// checkTree returns the damaged file paths below tree tid (mounted at dir)
// and errors for subtrees that cannot be read.
func (c *Checker) checkTree(ctx context.Context, d *damage, tid id.ID, dir string) ([]string, []string) {
	rel, relErrs := c.relPaths(ctx, d, tid)
	out := make([]string, len(rel))
	for i, r := range rel {
		out[i] = path.Join(dir, r)
	}
	errs := make([]string, len(relErrs))
	for i, e := range relErrs {
		errs[i] = fmt.Sprintf("%s: %s", dir, e)
	}
	return out, errs
}

// relPaths returns the damaged file paths below tree tid relative to it,
// and errors for subtrees that cannot be read. Only the trees with damage
// below them are read again, for their names.
func (c *Checker) relPaths(ctx context.Context, d *damage, tid id.ID) ([]string, []string) {
	if !d.damaged(tid) {
		return nil, nil
	}
	if m, ok := d.rel[tid]; ok {
		return m[0], m[1]
	}
	var damaged, errs []string
	if lost := d.trees[tid].lost; lost != "" {
		damaged, errs = []string{"."}, []string{"directory listing lost: " + lost}
	} else if t, err := tree.Load(ctx, c.repo, tid); unavailable(err) {
		// Read at the walk, damage below it was found; the files are
		// not named, the directory not called lost.
		errs = []string{"damage below this directory, whose files cannot be named now: the storage did not answer when it was read again: " + err.Error()}
	} else if err != nil {
		damaged, errs = []string{"."}, []string{"directory listing lost: " + err.Error()}
	} else {
		for _, n := range t.Nodes {
			switch n.Type {
			case tree.Dir:
				f, e := c.relPaths(ctx, d, *n.Subtree)
				for _, p := range f {
					damaged = append(damaged, path.Join(n.Name, p))
				}
				for _, x := range e {
					errs = append(errs, n.Name+": "+x)
				}
			case tree.File:
				if c.fileDamaged(n) {
					damaged = append(damaged, n.Name)
				}
			}
		}
	}
	d.rel[tid] = [2][]string{damaged, errs}
	return damaged, errs
}
