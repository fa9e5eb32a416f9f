package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/chunker"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// DefaultBlockSize is the chunk size for relation files: four pages. See
// docs/postgres.md ("Base backups") for the measurements behind it.
const DefaultBlockSize = 32 << 10

// maxBlockSize bounds --block-size: larger chunks store more unchanged
// pages again for every changed one.
const maxBlockSize = 1 << 20

// BackupOptions describe one base backup.
type BackupOptions struct {
	DataDir    string // the server's data directory as this machine sees it; "" = data_directory
	DSN        string // libpq connection string or URL; "" = PG* environment
	Tags       []string
	BlockSize  int           // relation file chunk size, a multiple of 8 KiB; 0 = DefaultBlockSize
	WALTimeout time.Duration // how long to wait for the backup's WAL to be archived; 0 = 5 minutes
	Host       string        // recorded in the snapshot; "" = this machine's hostname
	Program    string
	Workers    int // hash/compress/seal goroutines; 0 = archiver default (one per core)
	Readers    int // files read at once; 0 = archiver.DefaultReaders
	Log        *slog.Logger
	// OnArchiver is called with the archiver as it starts, for progress.
	OnArchiver func(*archiver.Archiver)
	// Commit configures the commit step that saves the snapshot.
	Commit commit.Options
	// sessionCheck is how often the backup session is pinged while files
	// are copied (tests shorten it).
	sessionCheck time.Duration
	tablespaces  []Tablespace // as the server lists them
}

func (o *BackupOptions) setDefaults() error {
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.BlockSize < PageSize || o.BlockSize%PageSize != 0 || o.BlockSize > maxBlockSize {
		return fmt.Errorf("block size %d: want a multiple of 8 KiB (8192 bytes) up to 1 MiB", o.BlockSize)
	}
	if o.WALTimeout <= 0 {
		o.WALTimeout = 5 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.sessionCheck <= 0 {
		o.sessionCheck = 5 * time.Second
	}
	return nil
}

// Backup takes an online base backup of the cluster at o.DSN into repo:
// pg_backup_start, a parallel copy of the data directory and tablespaces
// (relation files in fixed blocks, page checksums verified when enabled),
// pg_control last, pg_backup_stop, and a wait until every WAL segment the
// backup needs is in the repository. Only then is the snapshot saved,
// through the commit step (internal/commit): its existence marks the
// backup complete. The repository index must be loaded. Corrupt pages do
// not fail the backup; they are listed in the BackupInfo. A snapshot saved
// whose retention or commit hook failed is returned with the error.
func Backup(ctx context.Context, repo *repository.Repository, o BackupOptions) (*snapshot.Snapshot, *BackupInfo, error) {
	if err := o.setDefaults(); err != nil {
		return nil, nil, err
	}
	if err := snapshot.CheckTags(o.Tags); err != nil {
		return nil, nil, err
	}
	if err := snapshot.CheckHost(o.Host); err != nil {
		return nil, nil, err
	}
	began := time.Now()
	sess, err := Connect(ctx, o.DSN)
	if err != nil {
		return nil, nil, err
	}
	// Closing the session aborts a backup still in progress on the server.
	defer sess.Close(context.WithoutCancel(ctx))
	dataDir, err := checkDataDir(o.DataDir, sess.Server)
	if err != nil {
		return nil, nil, err
	}
	step, err := commit.Begin(ctx, repo, o.Commit)
	if err != nil {
		return nil, nil, err
	}
	parent, err := newestBackup(ctx, repo, sess.Server.SystemID)
	if err != nil {
		return nil, nil, err
	}

	o.tablespaces = sess.Server.Tablespaces
	info, cp, err := runBackup(ctx, repo, sess, dataDir, parent, o)
	if err != nil {
		return nil, nil, err
	}
	sn, err := newSnapshot(info, cp, parent, o, began)
	if err != nil {
		return nil, nil, err
	}
	if _, err := step.Save(ctx, sn); err != nil {
		if sn.ID.IsNull() {
			return nil, nil, err
		}
		return sn, info, err // saved, but its retention or the commit hook failed
	}
	return sn, info, nil
}

// runBackup holds the server in backup mode while the files are copied,
// then waits until the backup's WAL is in the repository.
func runBackup(ctx context.Context, repo *repository.Repository, sess *Session, dataDir string, parent *snapshot.Snapshot,
	o BackupOptions) (*BackupInfo, *copied, error) {
	srv := sess.Server
	started, err := sess.Start(ctx, "nestguard "+time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return nil, nil, err
	}
	o.Log.Info("base backup started", "lsn", started.LSN, "timeline", started.Timeline)
	if err := checkLive(dataDir, srv, started.LSN); err != nil {
		return nil, nil, fmt.Errorf("base backup refused, nothing stored: %w", err)
	}
	copyStart := time.Now()
	copyCtx, unwatch := sess.Watch(ctx, o.sessionCheck)
	cp, err := copyCluster(copyCtx, repo, dataDir, started.LSN, srv.DataChecksums, parent, o)
	if err != nil && ctx.Err() == nil && context.Cause(copyCtx) != nil {
		err = context.Cause(copyCtx) // the session was lost: say so, not "canceled"
	}
	unwatch()
	if err != nil {
		return nil, nil, fmt.Errorf("base backup failed, no snapshot saved: %w", err)
	}

	deadline := time.Now().Add(o.WALTimeout)
	stopCtx, cancel := context.WithDeadlineCause(ctx, deadline, errors.New("--wal-timeout reached"))
	defer cancel()
	stopped, err := sess.Stop(stopCtx)
	if err != nil {
		if stopCtx.Err() != nil && ctx.Err() == nil {
			return nil, nil, fmt.Errorf("base backup incomplete, no snapshot saved: the WAL from segment %s on was not archived within --wal-timeout: %w",
				pgmeta.SegmentOf(started.LSN, started.Timeline, srv.WALSegmentSize), err)
		}
		return nil, nil, fmt.Errorf("base backup failed, no snapshot saved: %w", err)
	}
	startLSN, tli, err := parseBackupLabel(stopped.BackupLabel)
	if err != nil {
		return nil, nil, err
	}
	if startLSN != started.LSN {
		return nil, nil, fmt.Errorf("backup_label starts at %s but pg_backup_start returned %s", startLSN, started.LSN)
	}
	info := &BackupInfo{
		SystemID:       srv.SystemID,
		ServerVersion:  srv.VersionNum,
		Timeline:       tli,
		StartLSN:       started.LSN,
		StopLSN:        stopped.LSN,
		StartWAL:       pgmeta.SegmentOf(started.LSN, tli, srv.WALSegmentSize),
		StopWAL:        pgmeta.SegmentOf(lastNeededByte(stopped.LSN, started.LSN), tli, srv.WALSegmentSize),
		StartTime:      started.Time.UTC(),
		StopTime:       stopped.Time.UTC(),
		WALSegmentSize: srv.WALSegmentSize,
		BlockSize:      o.BlockSize,
		DataChecksums:  srv.DataChecksums,
		BackupLabel:    stopped.BackupLabel,
		TablespaceMap:  stopped.TablespaceMap,
		PGControl:      cp.pgControl,
		Tablespaces:    cp.tablespaces,
		CorruptPages:   cp.corrupt,
		DataDir:        dataDir,
		DatabaseSize:   cp.summary.TotalBytes,
		CopyStart:      copyStart.UTC(),
	}
	// Blobs and index first, then the WAL, then (the caller) the
	// snapshot: whatever the snapshot references is durable before it
	// exists.
	if err := repo.Flush(ctx); err != nil {
		return nil, nil, err
	}
	if err := waitWAL(ctx, repo.Backend(), info, deadline); err != nil {
		return nil, nil, err
	}
	return info, cp, nil
}

// newSnapshot is the snapshot that marks the backup complete once saved;
// the commit step adds what the backup stored to its summary.
func newSnapshot(info *BackupInfo, cp *copied, parent *snapshot.Snapshot, o BackupOptions, began time.Time) (*snapshot.Snapshot, error) {
	extra, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	sum := cp.summary
	sum.Start = began
	sn := &snapshot.Snapshot{
		Time:     began.UTC(),
		Kind:     snapshot.KindPostgres,
		Paths:    []string{info.DataDir},
		Hostname: o.Host,
		Tags:     o.Tags,
		Tree:     cp.tree,
		Program:  o.Program,
		Summary:  &sum,
		Extra:    extra,
	}
	if u, err := user.Current(); err == nil {
		sn.Username = u.Username
	}
	if parent != nil {
		sn.Parent = &parent.ID
	}
	return sn, nil
}

// lastNeededByte is the position whose segment is the last one a backup
// stopping at stop needs: the stop location may be exactly the start of a
// segment that holds nothing of the backup yet (PostgreSQL waits for the
// previous one, too).
func lastNeededByte(stop, start LSN) LSN {
	if stop > start {
		return stop - 1
	}
	return stop
}

// checkDataDir resolves the directory to copy (symlinks too) and makes sure it is the
// data directory of the server the session talks to, not another cluster's
// nor a copy of this one (a stale copy, or one on another timeline), since
// a backup of a copy would be saved and later restored without the rows
// committed since the copy was made:
//   - its pg_control must carry the server's system identifier and
//     timeline (pg_control_system(), pg_control_checkpoint());
//   - if the server's data_directory exists on this machine, it must be
//     the same directory (by path with symlinks resolved, or by device and
//     inode: the server may see it through another path).
//
// Where the server's path is not visible here (another mount namespace),
// checkLive compares the checkpoint pg_backup_start makes with the one on
// disk.
func checkDataDir(dir string, srv Server) (string, error) {
	if dir == "" {
		dir = srv.DataDir
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	abs = filepath.Clean(abs)
	ctl, err := readControl(abs)
	if err != nil && (!errors.Is(err, errControlVersion) || ctl.SystemID == srv.SystemID) {
		return "", fmt.Errorf("--pgdata %s is not a readable PostgreSQL data directory (the server reports %s): %w", abs, srv.DataDir, err)
	}
	if ctl.SystemID != srv.SystemID {
		return "", fmt.Errorf("--pgdata %s belongs to cluster %d, but the server at --dsn is cluster %d (data directory %s): point both at the same cluster",
			abs, ctl.SystemID, srv.SystemID, srv.DataDir)
	}
	if ctl.Timeline != srv.Timeline {
		return "", fmt.Errorf("--pgdata %s is on timeline %d, but the server at --dsn is on timeline %d (data directory %s): it is another copy of the cluster; back up the server's own data directory",
			abs, ctl.Timeline, srv.Timeline, srv.DataDir)
	}
	if err := sameDir(abs, srv.DataDir); err != nil {
		return "", err
	}
	// The copy reads a directory, not a link to one.
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	return abs, nil
}

// sameDir refuses dir if the server's data directory exists on this
// machine and is another directory.
func sameDir(dir, serverDir string) error {
	sfi, err := os.Stat(serverDir)
	if err != nil {
		return nil // not visible from here: checkLive decides
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--pgdata %s: %w", dir, err)
	}
	if os.SameFile(fi, sfi) {
		return nil
	}
	r1, err1 := filepath.EvalSymlinks(dir)
	r2, err2 := filepath.EvalSymlinks(serverDir)
	if err1 == nil && err2 == nil && r1 == r2 {
		return nil
	}
	return fmt.Errorf("--pgdata %s (%s) is not the data directory of the server at --dsn, which is %s (%s): a copy of the cluster would be backed up without the rows committed since it was made; give --pgdata %s, or leave --pgdata out",
		dir, fileID(fi), serverDir, fileID(sfi), serverDir)
}

func fileID(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("device %d, inode %d", st.Dev, st.Ino)
	}
	return "no inode"
}

// checkLive makes sure the directory being copied is the one the server
// writes: pg_backup_start has just written a checkpoint whose redo
// location is the backup's start, and the server's pg_control records it
// before pg_backup_start returns. A copy of the data directory still holds
// an older checkpoint.
func checkLive(dir string, srv Server, start LSN) error {
	ctl, err := readControl(dir)
	if err != nil {
		return fmt.Errorf("--pgdata %s: %w", dir, err)
	}
	if ctl.SystemID != srv.SystemID || ctl.Timeline != srv.Timeline || ctl.Redo < start {
		return fmt.Errorf("--pgdata %s is not the data directory the server at --dsn writes (%s): its last checkpoint (redo %s, timeline %d) is older than the one the server made to start this backup (redo %s, timeline %d), so it is a stale copy; back up the server's own data directory",
			dir, srv.DataDir, ctl.Redo, ctl.Timeline, start, srv.Timeline)
	}
	return nil
}

// newestBackup returns the newest base backup of the cluster, whose tree
// lets unchanged files be skipped; nil if there is none.
func newestBackup(ctx context.Context, repo *repository.Repository, systemID uint64) (*snapshot.Snapshot, error) {
	list, _, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, err
	}
	for _, sn := range slices.Backward(list) {
		if sn.Kind != snapshot.KindPostgres {
			continue
		}
		if bi, err := pgmeta.Info(sn); err == nil && bi.SystemID == systemID {
			return sn, nil
		}
	}
	return nil, nil
}

// copied is what the file copy produced.
type copied struct {
	tree        id.ID
	pgControl   id.ID
	tablespaces []Tablespace
	corrupt     []CorruptPage
	summary     snapshot.Summary
}

// tablespaceDir is a tablespace found as a symlink in pg_tblspc.
type tablespaceDir struct {
	oid      uint32
	link     string // the symlink's target, as recorded
	resolved string // with every symlink resolved, to read from
}

// path is the tablespace's place in the data directory.
func (t tablespaceDir) path() string { return "pg_tblspc/" + strconv.FormatUint(uint64(t.oid), 10) }

// onDisk is the directory that holds the entries of dir (slash-separated,
// relative to the data directory): below a tablespace's link, its target.
func onDisk(dataDir string, tss []tablespaceDir, dir string) string {
	for _, t := range tss {
		if rest, ok := strings.CutPrefix(dir, t.path()); ok && (rest == "" || rest[0] == '/') {
			return filepath.Join(t.resolved, filepath.FromSlash(rest))
		}
	}
	return filepath.Join(dataDir, filepath.FromSlash(dir))
}

// copyCluster copies the data directory with each tablespace in its place
// in pg_tblspc, then pg_control, and returns the root tree.
func copyCluster(ctx context.Context, repo *repository.Repository, dataDir string, startLSN LSN, checksums bool,
	parent *snapshot.Snapshot, o BackupOptions) (*copied, error) {
	tss, err := findTablespaces(dataDir)
	if err != nil {
		return nil, err
	}
	for _, want := range o.tablespaces {
		if filepath.IsAbs(want.Location) && !slices.ContainsFunc(tss, func(t tablespaceDir) bool { return t.oid == want.OID }) {
			return nil, fmt.Errorf("tablespace %d (%s) has no link in %s/pg_tblspc: is --pgdata the server's data directory?", want.OID, want.Location, dataDir)
		}
	}
	cp := &copied{}
	// Each tablespace is read from its target, in place of its link.
	var mounts []archiver.Mount
	for _, ts := range tss {
		mounts = append(mounts, archiver.Mount{Path: ts.path(), Dir: ts.resolved})
		cp.tablespaces = append(cp.tablespaces, Tablespace{OID: ts.oid, Location: ts.link})
	}
	ex := newExcluder()
	var verifier *PageVerifier
	if checksums {
		verifier = NewPageVerifier(startLSN)
		verifier.DataDir = dataDir // a page failing its checksum is read again once: it may have been torn by a concurrent write
	}
	parentTree, rereadSince := fromParent(parent)
	opt := archiver.Options{
		Parent:      parentTree,
		RereadSince: rereadSince,
		Mounts:      mounts,
		Chunker:     chunkerParams(repo),
		Seed:        repo.Key().ChunkerSeed(),
		Workers:     o.Workers,
		Readers:     o.Readers,
		Log:         o.Log,
		// PostgreSQL writes its files while they are copied, by design:
		// WAL replay from the backup's start makes each consistent, so
		// a file written while it is read is no partial backup.
		ExpectWrites: true,
		Exclude: func(p string, fi fs.FileInfo) bool {
			rel := filepath.ToSlash(p)
			return ex.exclude(rel, onDisk(dataDir, tss, path.Dir(rel)), fi)
		},
		Splitter: func(p string, rd io.Reader) chunker.Splitter {
			if _, ok := relationFile(filepath.ToSlash(p)); ok {
				return chunker.NewFixed(rd, o.BlockSize)
			}
			return nil
		},
	}
	if verifier != nil {
		opt.OnChunk = func(p string, off int64, data []byte) {
			verifier.OnChunk(filepath.ToSlash(p), off, data)
		}
	}
	a := archiver.New(repo, opt)
	if o.OnArchiver != nil {
		o.OnArchiver(a)
	}
	start := time.Now()
	if cp.tree, err = a.SnapshotDir(ctx, dataDir); err != nil {
		return nil, err
	}
	if err := fileErrors(dataDir, a.Errors()); err != nil {
		return nil, err
	}
	cp.summary = *a.Summary(start)
	if verifier != nil {
		cp.corrupt = verifier.Corrupt()
	}

	// pg_control last: it must not be newer than anything else copied.
	ctl, err := os.ReadFile(filepath.Join(dataDir, controlFile))
	if err != nil {
		return nil, fmt.Errorf("copying pg_control: %w", err)
	}
	if cp.pgControl, _, err = repo.SaveBlob(ctx, index.DataBlob, ctl); err != nil {
		return nil, fmt.Errorf("saving pg_control: %w", err)
	}
	cp.summary.Files++
	cp.summary.TotalBytes += int64(len(ctl))
	cp.summary.BytesRead += int64(len(ctl))
	return cp, nil
}

// mtimeMargin covers file system timestamp granularity (a clock tick;
// a second on some file systems) and clock steps.
const mtimeMargin = time.Second

// fromParent is what the archiver takes from the parent backup: its tree,
// to skip unchanged files (same size, mtime, ctime, inode), and the time
// from which files it saw modified are read again all the same (see
// archiver.Options.RereadSince): a second before the parent's copy began,
// since a write in the same timestamp tick as the parent's read leaves
// the mtime as it was. A parent that did not record when its copy began
// gets a time before any file's, so that every file is read again.
func fromParent(parent *snapshot.Snapshot) (*id.ID, time.Time) {
	if parent == nil {
		return nil, time.Time{}
	}
	pi, err := pgmeta.Info(parent)
	if err != nil {
		return nil, time.Time{}
	}
	// Never zero (which would read nothing again): the zero CopyStart of a
	// parent without one becomes a second before year 1.
	return &parent.Tree, pi.CopyStart.Add(-mtimeMargin)
}

func chunkerParams(repo *repository.Repository) chunker.Params {
	c := repo.Config().Chunker
	return chunker.Params{Min: c.Min, Avg: c.Avg, Max: c.Max}
}

// findTablespaces lists the symlinks of pg_tblspc. In-place tablespaces
// (real directories there) are part of the data directory's walk.
func findTablespaces(dataDir string) ([]tablespaceDir, error) {
	dir := filepath.Join(dataDir, "pg_tblspc")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing tablespaces: %w", err)
	}
	var out []tablespaceDir
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		oid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue // not a tablespace: PostgreSQL ignores it too
		}
		p := filepath.Join(dir, e.Name())
		link, err := os.Readlink(p)
		if err != nil {
			return nil, fmt.Errorf("tablespace %s: %w", e.Name(), err)
		}
		resolved, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, fmt.Errorf("tablespace %s points to %s: %w", e.Name(), link, err)
		}
		out = append(out, tablespaceDir{oid: uint32(oid), link: link, resolved: resolved})
	}
	return out, nil
}

// fileErrors decides which unreadable entries fail the backup. Files that
// vanished while the backup ran (a dropped table, a removed temporary
// file) are normal: WAL replay recreates the state. Any other unreadable
// file would leave a hole that replay cannot fill.
func fileErrors(dir string, errs []archiver.FileError) error {
	var bad []string
	for _, fe := range errs {
		if _, err := os.Lstat(fe.Path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		bad = append(bad, fmt.Sprintf("%s: %s", fe.Path, fe.Err))
	}
	if len(bad) == 0 {
		return nil
	}
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("and %d more", len(bad)-10))
	}
	return fmt.Errorf("cannot read %d files of %s (a base backup needs every file): %s", len(bad), dir, strings.Join(bad, "; "))
}

// parseBackupLabel reads the start location and timeline of a backup_label.
func parseBackupLabel(label string) (LSN, uint32, error) {
	var (
		start    LSN
		tli      uint32
		gotStart bool
	)
	for line := range strings.SplitSeq(label, "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "START WAL LOCATION":
			lsn, _, _ := strings.Cut(v, " ")
			l, err := pgmeta.ParseLSN(lsn)
			if err != nil {
				return 0, 0, fmt.Errorf("backup_label: %w", err)
			}
			start, gotStart = l, true
		case "START TIMELINE":
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || n == 0 {
				return 0, 0, fmt.Errorf("backup_label: invalid START TIMELINE %q", v)
			}
			tli = uint32(n)
		}
	}
	if !gotStart || tli == 0 {
		return 0, 0, errors.New("backup_label lacks START WAL LOCATION or START TIMELINE")
	}
	return start, tli, nil
}

// waitWAL waits until every WAL segment from the backup's start to its
// stop is in the repository, or until deadline (the --wal-timeout).
func waitWAL(ctx context.Context, be backend.Backend, info *BackupInfo, deadline time.Time) error {
	missing, err := pgmeta.SegmentsBetween(info.StartWAL, info.StopWAL, info.WALSegmentSize)
	if err != nil {
		return err
	}
	// An archive call takes tens of milliseconds: poll soon, then back off.
	delay := 20 * time.Millisecond
	for {
		var still []string
		for _, name := range missing {
			_, err := be.Stat(ctx, backend.Handle{Type: backend.WALFile, Name: name})
			switch {
			case err == nil:
			case errors.Is(err, fs.ErrNotExist):
				still = append(still, name)
			default:
				return fmt.Errorf("checking for WAL segment %s in the repository: %w", name, err)
			}
		}
		if len(still) == 0 {
			return nil
		}
		missing = still
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("base backup incomplete, no snapshot saved: WAL segments %s are not in the repository after --wal-timeout: check that archive_command runs 'nestguard pg archive-wal %%p' into this repository (see pg_stat_archiver and the server log)",
				strings.Join(missing, ", "))
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(min(delay, left)):
			delay = min(2*delay, time.Second)
		}
	}
}
