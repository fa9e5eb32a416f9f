package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/atomicfile"
	"github.com/nestguard/nestguard/internal/durable"
	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/restorer"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// RestoreOptions describe a point-in-time restore.
type RestoreOptions struct {
	TargetDir    string
	Target       Target
	TargetAction string // ActionPause (default, as PostgreSQL), ActionPromote or ActionShutdown
	// From names the base backup (snapshot ID prefix) to restore instead
	// of the newest one that ends before the target.
	From      string
	Overwrite bool // allow non-empty target and tablespace directories
	// ArchiveOff sets archive_mode = off in the restored cluster
	// (RecoveryConfig.ArchiveOff: pg restore --archive-mode off).
	ArchiveOff bool
	// Standby restores the newest base backup as a standby (Target must
	// be Latest, with no action): standby.signal, the timeline latest,
	// and, if given, PrimaryConninfo (RecoveryConfig.Standby). With
	// Start, Restore returns once the standby is consistent, and leaves
	// it running.
	Standby         bool
	PrimaryConninfo string
	standbyStall    time.Duration // tests: standbyStall
	// RestoreCommand is restore_command exactly as PostgreSQL will run it.
	// It must not contain a secret: it is stored in postgresql.auto.conf.
	RestoreCommand string
	// SpoolSession, if set, is the --spool-session RestoreCommand passes
	// to 'nestguard pg restore-wal': the first PrefetchWAL segments of
	// the WAL to replay are then fetched into the spool of that session
	// (pg_wal/.nestguard-spool) while the files are restored, so that the
	// server's first requests are a rename.
	SpoolSession string
	PrefetchWAL  int
	// TablespaceMap relocates tablespaces: OID -> new directory.
	TablespaceMap map[uint32]string
	Workers       int // packs read and files written at once; 0 = restorer.DefaultWorkers
	// NoSync returns without waiting for the restored files to reach the
	// disk (as pg_basebackup --no-sync): by default the data directory
	// and tablespaces are synced before Restore reports them restored
	// (and before the server starts), and a failed sync fails it.
	NoSync bool

	// Start starts the server after the restore and waits until recovery
	// reached the target.
	Start        bool
	BinDir       string        // directory of pg_ctl and postgres; "" = search
	Port         int           // 0 = the port the restored configuration says
	StartTimeout time.Duration // bound on recovery; 0 = one hour
	// LogFile is the server log while recovering; "" = DefaultLogFile.
	// It must be outside the data directory, which the next base backup
	// copies.
	LogFile string

	Log *slog.Logger
	// OnRestorer is called with each restorer as it starts, for progress.
	OnRestorer func(*restorer.Restorer)
}

// RestoreResult reports a restore: what was restored and, with Start,
// where recovery stopped and how long each phase took.
type RestoreResult struct {
	Snapshot    string               `json:"snapshot"`
	Base        *BackupInfo          `json:"base_backup"`
	TargetDir   string               `json:"target_dir"`
	Files       int64                `json:"files"`
	Bytes       int64                `json:"bytes"`
	Damaged     []restorer.FileError `json:"damaged,omitempty"`
	Tablespaces map[uint32]string    `json:"tablespaces,omitempty"` // OID -> restored directory
	Owner       string               `json:"owner,omitempty"`
	Settings    map[string]string    `json:"recovery_settings"` // as written to postgresql.auto.conf
	Standby     bool                 `json:"standby,omitempty"` // restored as a standby (standby.signal)
	Started     bool                 `json:"started"`
	Recovery    *RecoveryPoint       `json:"recovery,omitempty"`
	RestoreTime time.Duration        `json:"-"`       // files, until the data directory is ready
	ReplayTime  time.Duration        `json:"-"`       // server start to recovery target
	TotalTime   time.Duration        `json:"-"`       // the measured recovery time (RTO)
	Seconds     map[string]float64   `json:"seconds"` // the three durations: restore, replay, total
	// Server is the server Restore started (with Start), for a caller that
	// goes on using the cluster and stops it.
	Server *RestoredServer `json:"-"`
}

// Restore restores a base backup into o.TargetDir and configures archive
// recovery to o.Target. Everything that can refuse the restore (a target
// outside the recoverable window, a WAL gap, a non-empty directory) is
// checked before anything is written. With o.Start the server is started
// and Restore returns once recovery reached the target.
func Restore(ctx context.Context, repo *repository.Repository, o RestoreOptions) (*RestoreResult, error) {
	began := time.Now()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = time.Hour
	}
	if o.TargetDir == "" {
		return nil, errors.New("no target directory given")
	}
	dir, err := filepath.Abs(o.TargetDir)
	if err != nil {
		return nil, err
	}
	o.TargetDir = dir
	rc := RecoveryConfig{RestoreCommand: o.RestoreCommand, Target: o.Target, Action: o.TargetAction, ArchiveOff: o.ArchiveOff,
		Standby: o.Standby, PrimaryConninfo: o.PrimaryConninfo}
	if o.Standby && !o.Target.Latest {
		return nil, errors.New("a standby is restored from the newest base backup and follows the archive to its end: no recovery target")
	}
	// With --start this process feeds the spool while the server replays
	// (feedSpool), and the shell takes spooled segments.
	feed := o.Start && o.SpoolSession != ""
	if feed {
		rc.RestoreCommand = spoolFirst(o.RestoreCommand, bootID())
	}
	kv, err := rc.settings()
	if err != nil {
		return nil, err
	}
	var bins *ServerBins
	if o.Start {
		if bins, err = FindServerBins(o.BinDir); err != nil {
			return nil, err
		}
		if o.LogFile != "" {
			if err := checkLogFile(o.LogFile, o.TargetDir); err != nil {
				return nil, err
			}
		}
	}

	sn, info, st, err := pickBase(ctx, repo, o)
	if err != nil {
		return nil, err
	}
	// The timeline checked, by number, in decimal: PostgreSQL's latest is
	// the newest history file when replay gets there, and one that
	// appears meanwhile (another copy promoted into this repository)
	// would be followed unchecked; a number given as "011" would be read
	// as octal (9). Not a standby's latest: it must follow the
	// promotions still to come, of the primary it stands by for.
	if tli, ok := st.TimelineFor(sn, o.Target.Timeline); ok && !(o.Standby && isLatest(o.Target.Timeline)) {
		o.Target.Timeline = strconv.FormatUint(uint64(tli), 10)
		rc.Target.Timeline = o.Target.Timeline
		if kv, err = rc.settings(); err != nil {
			return nil, err
		}
	}
	o.Log.Debug("restore: base backup picked", "elapsed", time.Since(began))
	root, err := tree.Load(ctx, repo, sn.Tree)
	if err != nil {
		return nil, fmt.Errorf("base backup %s: %w", sn.ID.Short(), err)
	}
	places, err := tablespacePlaces(ctx, repo, root, info, o.TablespaceMap)
	if err != nil {
		return nil, err
	}
	if err := checkEmpty(o.TargetDir, o.Overwrite); err != nil {
		return nil, err
	}
	for _, p := range places {
		if err := checkEmpty(p.dir, o.Overwrite); err != nil {
			return nil, fmt.Errorf("tablespace %d: %w", p.oid, err)
		}
	}
	owner := OwnerOf(root)

	res := &RestoreResult{Snapshot: sn.ID.String(), Base: info, TargetDir: o.TargetDir, Settings: map[string]string{},
		Tablespaces: map[uint32]string{}, Owner: owner.name, Standby: o.Standby}
	for _, p := range kv {
		res.Settings[p[0]] = p[1]
	}
	var first []string
	if n := root.Find("pg_wal"); n == nil || n.Type == tree.Dir {
		// (A pg_wal linked elsewhere is restored as the link: no spool.)
		first = st.RecoveryPath(sn, o.Target.Timeline, o.PrefetchWAL)
	}
	prefilled := prefillSpool(ctx, repo, o, first)
	syncDirs, err := restoreFiles(ctx, repo, o, root, sn, places, res)
	o.Log.Debug("restore: files written", "elapsed", time.Since(began))
	<-prefilled
	if err != nil {
		return res, err
	}
	if len(res.Damaged) > 0 {
		return res, fmt.Errorf("%d files of base backup %s could not be restored (listed above): the data directory is incomplete and must not be started",
			len(res.Damaged), sn.ID.Short())
	}
	if err := finishDataDir(ctx, repo, o, info, places, rc); err != nil {
		return res, err
	}
	if err := owner.apply(o.TargetDir, places); err != nil {
		return res, err
	}
	o.Log.Debug("restore: recovery configured", "elapsed", time.Since(began))
	if err := syncRestored(ctx, o, syncDirs); err != nil {
		return res, err
	}
	var srv *RestoredServer
	if o.Start {
		srv = &RestoredServer{Bins: bins, DataDir: o.TargetDir, Owner: owner, Port: o.Port, LogFile: o.LogFile}
	}
	if o.Standby && o.Start {
		if err := spanReadable(ctx, repo, st, sn); err != nil {
			return res, err
		}
		if o.SpoolSession != "" { // nestguard's own restore_command
			if err := srv.probeRestoreCommand(ctx, rc.RestoreCommand); err != nil {
				return res, err
			}
		}
	}
	res.RestoreTime = time.Since(began)
	res.Seconds = map[string]float64{"restore": res.RestoreTime.Seconds()}
	if o.Start {
		replayStart := time.Now()
		if feed && first != nil {
			spool := restoreSpool(o)
			stop := startFeed(ctx, repo, spool, SpoolIdentity(o.SpoolSession, ""), st.RecoveryPath(sn, o.Target.Timeline, maxFeed), o.PrefetchWAL, o.Log)
			defer func() {
				stop()
				// What is left is past the target: recovery is over,
				// or paused there.
				dropSpool(spool, o.Log)
			}()
		}
		res.Server = srv
		var rp *RecoveryPoint
		if o.Standby {
			rp, err = res.Server.StartStandby(ctx, o.StartTimeout)
			if err == nil {
				if err = standbyCaughtUp(ctx, st, sn, res.Server, o, rp, replayStart.Add(o.StartTimeout)); err != nil {
					err = fmt.Errorf("%w\nserver log %s:\n%s", err, res.Server.logFile(), logTail(res.Server.logFile(), 0, 20))
				}
			}
			if err != nil {
				err = res.Server.stopFailed(ctx, rp, err)
			}
		} else {
			rp, err = res.Server.Recover(ctx, targetAction(o), PromotionFor(info.ServerVersion, o.Target.Latest), o.StartTimeout)
		}
		res.Started = true
		res.Recovery = rp
		res.ReplayTime = time.Since(replayStart)
		res.Seconds["replay"] = res.ReplayTime.Seconds()
		if err != nil {
			return res, err
		}
		if err := checkReachedLatest(ctx, st, sn, o, rp); err != nil {
			// Promoted, it would go on writing (and archiving) a timeline
			// that lacks committed work.
			if serr := res.Server.Stop(ctx, "immediate", time.Minute); serr != nil {
				err = fmt.Errorf("%w; stopping the server: %v", err, serr)
			}
			return res, err
		}
	}
	res.TotalTime = time.Since(began)
	res.Seconds["total"] = res.TotalTime.Seconds()
	return res, nil
}

// spanReadable reads and authenticates the WAL segments of base backup
// sn's own span before a standby is started: a standby asks again for
// ever for one it cannot read (restore-wal exits 1 on a standby), so one
// damaged there kept it from ever becoming consistent, and pg_ctl's wait
// (--start-timeout, an hour by default) from ending sooner (hostile
// test). A restore to a target needs no such check: its restore-wal
// exits 200 there, and the server stops at once.
func spanReadable(ctx context.Context, repo *repository.Repository, st *StatusReport, sn *snapshot.Snapshot) error {
	var bufs hugemem.Pool
	defer bufs.Close()
	for _, name := range st.SpanSegments(sn) {
		// As restore-wal reads it: authenticated, and checked whole.
		if _, err := ReadWAL(ctx, repo, name, &bufs); err != nil {
			return fmt.Errorf("WAL segment %s, which base backup %s needs to be consistent, cannot be read: %w; the standby was not started: run 'nestguard verify --read-data', or restore another base backup (--snapshot)",
				name, sn.ID.Short(), err)
		}
	}
	return nil
}

// standbyStall is how long a standby started by Restore may replay
// nothing before the last transaction the archive holds before it is
// called stuck: it asks restore_command again every
// wal_retrieve_retry_interval (5 s by default), and replays a backlog
// without standing still that long.
const standbyStall = time.Minute

// standbyCaughtUp waits until a standby Restore started replayed the
// last transaction the archive holds on its path from sn (as
// checkReachedLatest checks a recovery to the latest WAL): a standby
// that cannot read a segment asks for it again for ever, in recovery and
// answering, and was reported running (hostile test). With hot_standby
// off there is no connection to ask (rp has no replay position): not
// checked.
func standbyCaughtUp(ctx context.Context, st *StatusReport, sn *snapshot.Snapshot, srv *RestoredServer, o RestoreOptions, rp *RecoveryPoint, deadline time.Time) error {
	x, err := notReplayed(ctx, st, sn, o, rp)
	if err != nil || x == nil {
		return err
	}
	stall := o.standbyStall
	if stall <= 0 {
		// A minute, or the time a segment takes at 4 MiB/s: a large
		// segment fetched slowly is not a standstill.
		stall = max(standbyStall, time.Duration(st.SegmentSize/(4<<20))*time.Second)
	}
	return srv.waitReplayed(ctx, rp, x, stall, deadline)
}

// notReplayed is the last transaction the archive holds on the path
// from sn along o's timeline when the server has not replayed past it
// yet (rp), or nil: also when rp has no replay position (no connection
// to ask) or the archive holds no transaction after sn.
func notReplayed(ctx context.Context, st *StatusReport, sn *snapshot.Snapshot, o RestoreOptions, rp *RecoveryPoint) (*XactEnd, error) {
	if rp == nil || rp.ReplayLSN == nil {
		return nil, nil
	}
	x, err := st.LastTransactionReached(ctx, sn, o.Target.Timeline)
	if err != nil {
		return nil, fmt.Errorf("checking that the server replayed the archived WAL: %w", err)
	}
	if x == nil || rp.replayedPast(x) {
		return nil, nil
	}
	return x, nil
}

// checkReachedLatest fails a recovery to the latest WAL that did not
// replay the last transaction the archive holds for it: PostgreSQL takes
// a segment it cannot use (torn or altered in the spool, not the segment
// its name says) for the end of the WAL and promotes there, and the copy
// then lacks what was committed after it, with nothing but a line in its
// log to say so. A record the archive holds only part of (one larger
// than the segments archived after its start) ends recovery before it
// as it should: nothing committed is after it.
func checkReachedLatest(ctx context.Context, st *StatusReport, sn *snapshot.Snapshot, o RestoreOptions, rp *RecoveryPoint) error {
	if !o.Target.Latest || o.Standby {
		return nil
	}
	x, err := notReplayed(ctx, st, sn, o, rp)
	if err != nil || x == nil {
		return err
	}
	return fmt.Errorf("recovery to the latest WAL ended at %s, before the last transaction the archive holds for it (%s): PostgreSQL did not replay the WAL archived from there on (the server log says why; a segment it could not use ends recovery as if the archive ended), so this copy lacks transactions committed in it; the server was stopped, and the copy must not be used: run 'nestguard verify --read-data' and restore again",
		*rp.ReplayLSN, x)
}

// syncRestored makes the restored cluster durable (unless o.NoSync), once
// everything is written: the files, then what came after them
// (pg_control, backup_label, the recovery settings, the directories made
// empty, the tablespace links, owners and modes). dirs are the data
// directory, each tablespace's, and each directory below them on another
// file system that the restore wrote into (restorer.SyncDirs): one
// syncfs each file system. PostgreSQL syncs the data directory again
// when it starts recovery; a cluster that is restored and not started
// is durable here.
func syncRestored(ctx context.Context, o RestoreOptions, dirs []string) error {
	if o.NoSync {
		return nil
	}
	if err := durable.Sync(ctx, dirs...); err != nil {
		return fmt.Errorf("the data directory %s is restored but not known to be on disk (a crash or power cut could lose it): %w", o.TargetDir, err)
	}
	return nil
}

// maxFeed bounds the segments feedSpool is given: 16 TiB of WAL.
const maxFeed = 1 << 20

// startFeed runs feedSpool until the returned stop is called.
func startFeed(ctx context.Context, repo WALRepo, spool, ident string, names []string, ahead int, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		feedSpool(ctx, repo, spool, ident, names, max(1, ahead), log)
	}()
	return func() {
		cancel()
		<-done
	}
}

// restoreSpool is the WAL spool of the cluster o restores, as its
// restore-wal finds it (DefaultSpoolDir of pg_wal/RECOVERYXLOG).
func restoreSpool(o RestoreOptions) string {
	return DefaultSpoolDir(filepath.Join(o.TargetDir, "pg_wal", "RECOVERYXLOG"))
}

// prefillSpool fetches names into the WAL spool of o's session in the
// background; the channel is closed when it is done. The first segments
// recovery needs are then ready when the server starts. Failing only
// costs that: restore-wal fetches what is not spooled.
func prefillSpool(ctx context.Context, repo *repository.Repository, o RestoreOptions, names []string) <-chan struct{} {
	done := make(chan struct{})
	if o.SpoolSession == "" || len(names) == 0 {
		close(done)
		return done
	}
	spool := restoreSpool(o)
	go func() {
		defer close(done)
		// Two at a time: the files being restored want the CPU more.
		n, err := PrefetchWAL(ctx, repo, spool, SpoolIdentity(o.SpoolSession, ""), names, 2, o.Log)
		if err != nil {
			o.Log.Warn("prefetching the first WAL segments", "err", err)
		}
		o.Log.Debug("prefetched the first WAL segments", "segments", n, "of", len(names))
	}()
	return done
}

// targetAction is what the server does at the recovery target: the
// action asked for (pause by default, as PostgreSQL), promote for the
// end of the WAL.
func targetAction(o RestoreOptions) string {
	if o.Target.Latest {
		return ActionPromote
	}
	if o.TargetAction == "" {
		return ActionPause
	}
	return o.TargetAction
}

// checkEmpty refuses a directory that holds anything, unless overwrite.
func checkEmpty(dir string, overwrite bool) error {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore target: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("restore target %s: %w", dir, err)
	}
	if len(names) > 0 && !overwrite {
		return fmt.Errorf("%w: %s (give an empty or new directory, or --overwrite)", restorer.ErrTargetNotEmpty, dir)
	}
	return nil
}

// tablespacePlace is where one tablespace of the backup is restored.
type tablespacePlace struct {
	oid  uint32
	name string // its entry in pg_tblspc
	dir  string
	tree id.ID // its files
}

// tablespacePlaces decides where each tablespace goes: the --tablespace-map
// directory if given, else its location recorded in tablespace_map.
func tablespacePlaces(ctx context.Context, repo *repository.Repository, root *tree.Tree, info *BackupInfo, remap map[uint32]string) ([]tablespacePlace, error) {
	recorded, err := ParseTablespaceMap(info.TablespaceMap)
	if err != nil {
		return nil, err
	}
	for oid := range remap {
		if _, ok := recorded[oid]; !ok {
			return nil, fmt.Errorf("--tablespace-map: the backup has no tablespace %d (it has %s)", oid, oidList(recorded))
		}
	}
	n := root.Find("pg_tblspc")
	if n == nil || n.Type != tree.Dir || n.Subtree == nil {
		if len(recorded) > 0 {
			return nil, errors.New("the base backup lists tablespaces but holds no pg_tblspc directory")
		}
		return nil, nil
	}
	ts, err := tree.Load(ctx, repo, *n.Subtree)
	if err != nil {
		return nil, fmt.Errorf("pg_tblspc: %w", err)
	}
	var out []tablespacePlace
	for oid, loc := range recorded {
		name := strconv.FormatUint(uint64(oid), 10)
		tn := ts.Find(name)
		if tn == nil || tn.Type != tree.Dir || tn.Subtree == nil {
			return nil, fmt.Errorf("tablespace %d is in tablespace_map but its files are not in the backup", oid)
		}
		dir := loc
		if d, ok := remap[oid]; ok {
			dir = d
		}
		if dir, err = filepath.Abs(dir); err != nil {
			return nil, err
		}
		out = append(out, tablespacePlace{oid: oid, name: name, dir: filepath.Clean(dir), tree: *tn.Subtree})
	}
	slices.SortFunc(out, func(a, b tablespacePlace) int { return int(a.oid) - int(b.oid) })
	for i := 1; i < len(out); i++ {
		if out[i].dir == out[i-1].dir {
			return nil, fmt.Errorf("tablespaces %d and %d would both be restored to %s", out[i-1].oid, out[i].oid, out[i].dir)
		}
	}
	return out, nil
}

func oidList(m map[uint32]string) string {
	if len(m) == 0 {
		return "none"
	}
	var s []string
	for _, oid := range slices.Sorted(maps.Keys(m)) {
		s = append(s, strconv.FormatUint(uint64(oid), 10))
	}
	return strings.Join(s, ", ")
}

// restoreFiles restores the data directory (without the relocated
// tablespaces) and then each tablespace into its own directory.
func restoreFiles(ctx context.Context, repo *repository.Repository, o RestoreOptions, root *tree.Tree, sn *snapshot.Snapshot,
	places []tablespacePlace, res *RestoreResult) (syncDirs []string, err error) {
	var include []string
	for _, n := range root.Nodes {
		if n.Name != "pg_tblspc" {
			include = append(include, "/"+n.Name)
			continue
		}
		if n.Subtree == nil {
			continue
		}
		// In-place tablespaces (directories, not in tablespace_map) stay
		// in the data directory.
		ts, err := tree.Load(ctx, repo, *n.Subtree)
		if err != nil {
			return nil, fmt.Errorf("pg_tblspc: %w", err)
		}
		for _, c := range ts.Nodes {
			if !slices.ContainsFunc(places, func(p tablespacePlace) bool { return p.name == c.Name }) {
				include = append(include, "/pg_tblspc/"+c.Name)
			}
		}
	}
	// The restorers do not sync: syncRestored syncs once, at the end,
	// their directories (SyncDirs) with what came after the files.
	// Writeback: that sync (and PostgreSQL's of the whole data directory
	// when recovery starts) then finds the data already on its way to
	// disk.
	run := func(target string, root id.ID, include, reserved []string) error {
		r := restorer.New(repo, restorer.Options{Target: target, Include: include, Overwrite: o.Overwrite, Workers: o.Workers, Log: o.Log,
			Reserved: reserved, Writeback: true, NoSync: true})
		if o.OnRestorer != nil {
			o.OnRestorer(r)
		}
		err := r.Restore(ctx, root)
		syncDirs = append(syncDirs, r.SyncDirs()...)
		res.Files += r.C.Restored.Load() // what was restored complete, not what was planned
		res.Bytes += r.C.BytesRestored.Load()
		res.Damaged = append(res.Damaged, r.Errors()...)
		return err
	}
	if len(include) == 0 {
		include = []string{"/PG_VERSION"} // never "everything": relocated tablespaces are left out
	}
	// pg_wal may hold the WAL spool prefillSpool is filling.
	if err := run(o.TargetDir, sn.Tree, include, []string{"pg_wal"}); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.TargetDir, "pg_tblspc"), 0o700); err != nil {
		return nil, err
	}
	for _, p := range places {
		if err := run(p.dir, p.tree, nil, nil); err != nil {
			return nil, fmt.Errorf("tablespace %d: %w", p.oid, err)
		}
		link := filepath.Join(o.TargetDir, "pg_tblspc", p.name)
		if o.Overwrite {
			os.Remove(link)
		}
		if err := os.Symlink(p.dir, link); err != nil {
			return nil, fmt.Errorf("tablespace %d: %w", p.oid, err)
		}
		res.Tablespaces[p.oid] = p.dir
	}
	return syncDirs, nil
}

// finishDataDir writes what the backup keeps outside the tree (pg_control,
// backup_label, tablespace_map), the directories it left empty, and the
// recovery settings. Each file is renamed into place whole, not synced:
// syncRestored's syncfs makes them durable with the rest. An fsync each
// would wait, on ext4, for the journal to write out the restored data
// still in the page cache (0.6-0.9 s measured for the bench's 1.6 GiB),
// and the syncfs after would find nothing left to do.
func finishDataDir(ctx context.Context, repo *repository.Repository, o RestoreOptions, info *BackupInfo, places []tablespacePlace, rc RecoveryConfig) error {
	ctl, err := repo.LoadBlob(ctx, info.PGControl, nil)
	if err != nil {
		return fmt.Errorf("pg_control of the base backup: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(o.TargetDir, "global"), 0o700); err != nil {
		return err
	}
	if err := atomicfile.WriteUnsynced(filepath.Join(o.TargetDir, controlFile), ctl, 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteUnsynced(filepath.Join(o.TargetDir, "backup_label"), []byte(info.BackupLabel), 0o600); err != nil {
		return err
	}
	tsmap := info.TablespaceMap
	if len(o.TablespaceMap) > 0 {
		m := map[uint32]string{}
		for _, p := range places {
			m[p.oid] = p.dir
		}
		tsmap = FormatTablespaceMap(m)
	}
	if tsmap != "" {
		// PostgreSQL recreates pg_tblspc's links from this file.
		if err := atomicfile.WriteUnsynced(filepath.Join(o.TargetDir, "tablespace_map"), []byte(tsmap), 0o600); err != nil {
			return err
		}
	}
	for _, d := range ExcludedDirs() {
		if err := os.MkdirAll(filepath.Join(o.TargetDir, filepath.FromSlash(d)), 0o700); err != nil {
			return err
		}
	}
	// A backup taken on a standby holds standby.signal, which would make
	// the restored server a standby that never reaches its target action.
	if err := os.Remove(filepath.Join(o.TargetDir, "standby.signal")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return WriteRecoveryConfig(o.TargetDir, rc)
}
