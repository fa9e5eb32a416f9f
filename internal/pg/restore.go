package pg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nestguard/nestguard/internal/atomicfile"
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
	// RestoreCommand is restore_command exactly as PostgreSQL will run it.
	// It must not contain a secret: it is stored in postgresql.auto.conf.
	RestoreCommand string
	// TablespaceMap relocates tablespaces: OID -> new directory.
	TablespaceMap map[uint32]string
	Workers       int

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
	Started     bool                 `json:"started"`
	Recovery    *RecoveryPoint       `json:"recovery,omitempty"`
	RestoreTime time.Duration        `json:"-"`       // files, until the data directory is ready
	ReplayTime  time.Duration        `json:"-"`       // server start to recovery target
	TotalTime   time.Duration        `json:"-"`       // the measured recovery time (RTO)
	Seconds     map[string]float64   `json:"seconds"` // the three durations: restore, replay, total
}

// RecoveryPoint is where recovery stopped, as the server reports it.
type RecoveryPoint struct {
	State      string     `json:"state"` // paused, promoted or shut down
	ReplayLSN  *LSN       `json:"replay_lsn,omitempty"`
	LastCommit *time.Time `json:"last_commit_time,omitempty"` // of the last transaction replayed
	Timeline   uint32     `json:"timeline,omitempty"`         // after promotion
	Message    string     `json:"message,omitempty"`          // the server's "recovery stopping ..." line
	Port       int        `json:"port,omitempty"`
	SocketDir  string     `json:"socket_dir,omitempty"`
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
	rc := RecoveryConfig{RestoreCommand: o.RestoreCommand, Target: o.Target, Action: o.TargetAction}
	kv, err := rc.settings()
	if err != nil {
		return nil, err
	}
	var bins *serverBins
	if o.Start {
		if bins, err = findServerBins(o.BinDir); err != nil {
			return nil, err
		}
		if o.LogFile != "" {
			if err := checkLogFile(o.LogFile, o.TargetDir); err != nil {
				return nil, err
			}
		}
	}

	sn, info, err := pickBase(ctx, repo, o)
	if err != nil {
		return nil, err
	}
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
	owner := ownerOf(root)

	res := &RestoreResult{Snapshot: sn.ID.String(), Base: info, TargetDir: o.TargetDir, Settings: map[string]string{},
		Tablespaces: map[uint32]string{}, Owner: owner.name}
	for _, p := range kv {
		res.Settings[p[0]] = p[1]
	}
	if err := restoreFiles(ctx, repo, o, root, sn, places, res); err != nil {
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
	res.RestoreTime = time.Since(began)
	res.Seconds = map[string]float64{"restore": res.RestoreTime.Seconds()}
	if o.Start {
		replayStart := time.Now()
		rp, err := recoverServer(ctx, bins, o, owner)
		res.Started = true
		res.Recovery = rp
		res.ReplayTime = time.Since(replayStart)
		res.Seconds["replay"] = res.ReplayTime.Seconds()
		if err != nil {
			return res, err
		}
	}
	res.TotalTime = time.Since(began)
	res.Seconds["total"] = res.TotalTime.Seconds()
	return res, nil
}

// pickBase chooses the base backup: the one CheckTarget picks, which also
// refuses a target outside the recoverable window or beyond a WAL gap, or
// the one o.From names, if the WAL from it reaches the target.
func pickBase(ctx context.Context, repo *repository.Repository, o RestoreOptions) (*snapshot.Snapshot, *BackupInfo, error) {
	st, err := Status(ctx, repo)
	if err != nil {
		return nil, nil, err
	}
	var base *snapshot.Snapshot
	if o.From == "" {
		if base, err = st.CheckTarget(ctx, o.Target); err != nil {
			return nil, nil, err
		}
	} else {
		list, unreadable, err := snapshot.List(ctx, repo)
		if err != nil {
			return nil, nil, err
		}
		if base, err = snapshot.Find(list, unreadable, o.From, snapshot.Filter{Kind: snapshot.KindPostgres}); err != nil {
			return nil, nil, fmt.Errorf("--snapshot: %w", err)
		}
		if err := st.CheckFrom(ctx, o.Target, base); err != nil {
			return nil, nil, fmt.Errorf("--snapshot %s: %w", base.ID.Short(), err)
		}
	}
	info, err := Info(base)
	if err != nil {
		return nil, nil, err
	}
	return base, info, nil
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
	node *tree.Node
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
		out = append(out, tablespacePlace{oid: oid, name: name, dir: filepath.Clean(dir), node: tn})
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
	places []tablespacePlace, res *RestoreResult) error {
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
			return fmt.Errorf("pg_tblspc: %w", err)
		}
		for _, c := range ts.Nodes {
			if !slices.ContainsFunc(places, func(p tablespacePlace) bool { return p.name == c.Name }) {
				include = append(include, "/pg_tblspc/"+c.Name)
			}
		}
	}
	run := func(target string, rootTree *tree.Node, include []string) error {
		r := restorer.New(repo, restorer.Options{Target: target, Include: include, Overwrite: o.Overwrite, Workers: o.Workers, Log: o.Log})
		if o.OnRestorer != nil {
			o.OnRestorer(r)
		}
		err := r.Restore(ctx, *rootTree.Subtree)
		res.Files += r.C.Restored.Load() // what was restored complete, not what was planned
		res.Bytes += r.C.BytesRestored.Load()
		res.Damaged = append(res.Damaged, r.Errors()...)
		return err
	}
	if len(include) == 0 {
		include = []string{"/PG_VERSION"} // never "everything": relocated tablespaces are left out
	}
	if err := run(o.TargetDir, &tree.Node{Subtree: &sn.Tree}, include); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(o.TargetDir, "pg_tblspc"), 0o700); err != nil {
		return err
	}
	for _, p := range places {
		if err := run(p.dir, p.node, nil); err != nil {
			return fmt.Errorf("tablespace %d: %w", p.oid, err)
		}
		link := filepath.Join(o.TargetDir, "pg_tblspc", p.name)
		if o.Overwrite {
			os.Remove(link)
		}
		if err := os.Symlink(p.dir, link); err != nil {
			return fmt.Errorf("tablespace %d: %w", p.oid, err)
		}
		res.Tablespaces[p.oid] = p.dir
	}
	return nil
}

// finishDataDir writes what the backup keeps outside the tree (pg_control,
// backup_label, tablespace_map), the directories it left empty, and the
// recovery settings.
func finishDataDir(ctx context.Context, repo *repository.Repository, o RestoreOptions, info *BackupInfo, places []tablespacePlace, rc RecoveryConfig) error {
	ctl, err := repo.LoadBlob(ctx, info.PGControl, nil)
	if err != nil {
		return fmt.Errorf("pg_control of the base backup: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(o.TargetDir, "global"), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(o.TargetDir, controlFile), ctl, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(o.TargetDir, "backup_label"), []byte(info.BackupLabel), 0o600); err != nil {
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
		if err := atomicfile.Write(filepath.Join(o.TargetDir, "tablespace_map"), []byte(tsmap), 0o600); err != nil {
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

// ParseTablespaceMap reads a tablespace_map: one "<oid> <path>" per line,
// with newlines, carriage returns and backslashes in the path escaped by
// a backslash.
func ParseTablespaceMap(s string) (map[uint32]string, error) {
	m := map[uint32]string{}
	var (
		cur    strings.Builder
		escape bool
	)
	line := func() error {
		l := cur.String()
		cur.Reset()
		if l == "" {
			return nil
		}
		oid, p, ok := strings.Cut(l, " ")
		n, err := strconv.ParseUint(oid, 10, 32)
		if !ok || err != nil || n == 0 || p == "" {
			return fmt.Errorf("tablespace_map: invalid line %q: want \"<oid> <path>\"", l)
		}
		if _, dup := m[uint32(n)]; dup {
			return fmt.Errorf("tablespace_map: tablespace %d listed twice", n)
		}
		m[uint32(n)] = p
		return nil
	}
	for _, c := range s {
		switch {
		case escape:
			cur.WriteRune(c)
			escape = false
		case c == '\\':
			escape = true
		case c == '\n' || c == '\r':
			if err := line(); err != nil {
				return nil, err
			}
		default:
			cur.WriteRune(c)
		}
	}
	if escape {
		return nil, errors.New("tablespace_map ends in a lone backslash")
	}
	if err := line(); err != nil {
		return nil, err
	}
	return m, nil
}

// FormatTablespaceMap writes m in tablespace_map's format, OIDs ascending.
func FormatTablespaceMap(m map[uint32]string) string {
	var b strings.Builder
	for _, oid := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%d ", oid)
		for _, c := range m[oid] {
			if c == '\n' || c == '\r' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(c)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// owner is the OS user the restored cluster belongs to.
type owner struct {
	name     string
	uid, gid int
	known    bool
}

// ownerOf reads the data directory's owner from the backup (PostgreSQL
// insists that one user owns every file), preferring the local user of
// the same name, since ids differ between machines.
func ownerOf(root *tree.Tree) owner {
	n := root.Find("PG_VERSION")
	if n == nil {
		n = root.Find("global")
	}
	if n == nil {
		return owner{}
	}
	o := owner{name: n.User, uid: int(n.UID), gid: int(n.GID), known: true}
	if n.User != "" {
		if u, err := user.Lookup(n.User); err == nil {
			uid, err1 := strconv.Atoi(u.Uid)
			gid, err2 := strconv.Atoi(u.Gid)
			if err1 == nil && err2 == nil {
				o.uid, o.gid = uid, gid
			}
		}
	}
	if o.name == "" {
		if u, err := user.LookupId(strconv.Itoa(o.uid)); err == nil {
			o.name = u.Username
		}
	}
	return o
}

// apply gives the data directory and tablespaces to the owner (when run
// as root) and sets the modes PostgreSQL requires.
func (ow owner) apply(dataDir string, places []tablespacePlace) error {
	dirs := []string{dataDir}
	for _, p := range places {
		dirs = append(dirs, p.dir)
	}
	for _, d := range dirs {
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
		if os.Geteuid() != 0 || !ow.known {
			continue
		}
		err := filepath.WalkDir(d, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, ow.uid, ow.gid)
		})
		if err != nil {
			return fmt.Errorf("giving %s to %s: %w", d, ow.name, err)
		}
	}
	return nil
}

// credential runs a process as the owner when this process is root.
func (ow owner) credential() *syscall.SysProcAttr {
	if os.Geteuid() != 0 || !ow.known || ow.uid == 0 {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(ow.uid), Gid: uint32(ow.gid), NoSetGroups: true}}
}

// serverBins are the PostgreSQL programs a restore with Start runs.
type serverBins struct{ pgCtl, postgres string }

func findServerBins(dir string) (*serverBins, error) {
	look := func(name string) (string, error) {
		if dir != "" {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("--bindir %s: %w", dir, err)
			}
			return p, nil
		}
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
		if len(dirs) > 0 {
			slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
			return dirs[0], nil
		}
		return "", fmt.Errorf("cannot find %s: give --bindir (for example /usr/lib/postgresql/15/bin)", name)
	}
	var b serverBins
	var err error
	if b.pgCtl, err = look("pg_ctl"); err != nil {
		return nil, err
	}
	if b.postgres, err = look("postgres"); err != nil {
		return nil, err
	}
	return &b, nil
}

// versionOf reads the major version of /usr/lib/postgresql/<v>/bin/x.
func versionOf(p string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
	return v
}

// recoverServer starts the restored cluster and waits until recovery
// reached its target: paused there, promoted, or shut down.
func recoverServer(ctx context.Context, bins *serverBins, o RestoreOptions, ow owner) (*RecoveryPoint, error) {
	logFile := o.LogFile
	if logFile == "" {
		logFile = DefaultLogFile(o.TargetDir)
	}
	// The log is appended to: only what this start writes is this
	// recovery's (an earlier restore into the same place left its lines).
	logStart, err := prepareLog(logFile, ow)
	if err != nil {
		return nil, err
	}
	port, sockDir, err := connTarget(ctx, bins, o, ow)
	if err != nil {
		return nil, err
	}
	rp := &RecoveryPoint{Port: port, SocketDir: sockDir}
	action := o.TargetAction
	if action == "" {
		action = ActionPause
	}
	if o.Target.Latest {
		action = ActionPromote
	}
	args := []string{"-D", o.TargetDir, "-l", logFile}
	if o.Port != 0 {
		args = append(args, "-o", "-p "+strconv.Itoa(o.Port))
	}
	if action == ActionShutdown {
		// The server exits once at the target: pg_ctl -w would call that a
		// failed start.
		args = append(args, "-W", "start")
	} else {
		args = append(args, "-w", "-t", strconv.Itoa(int(o.StartTimeout/time.Second)), "start")
	}
	cmd := exec.CommandContext(ctx, bins.pgCtl, args...)
	cmd.SysProcAttr = ow.credential()
	cmd.Dir = o.TargetDir
	cmd.Env = serverEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return rp, fmt.Errorf("pg_ctl start: %v: %s\nserver log %s:\n%s", err, strings.TrimSpace(string(out)), logFile, logTail(logFile, logStart, 30))
	}
	deadline := time.Now().Add(o.StartTimeout)
	if action == ActionShutdown {
		if err := waitExit(ctx, o.TargetDir, deadline); err != nil {
			return rp, fmt.Errorf("%w\nserver log %s:\n%s", err, logFile, logTail(logFile, logStart, 30))
		}
		rp.State = "shut down"
	} else if err := waitTarget(ctx, o.TargetDir, port, sockDir, ow, action, deadline, rp); err != nil {
		return rp, fmt.Errorf("%w\nserver log %s:\n%s", err, logFile, logTail(logFile, logStart, 30))
	}
	rp.Message = stopMessage(logFile, logStart)
	return rp, nil
}

// DefaultLogFile is where a restore's server log goes unless told
// otherwise: next to the data directory, never inside it, so that it is
// neither mistaken for the next restore's log nor copied by the next
// base backup. For /srv/pg/main: /srv/pg/main.nestguard-restore.log.
func DefaultLogFile(dataDir string) string {
	dataDir = filepath.Clean(dataDir)
	return filepath.Join(filepath.Dir(dataDir), filepath.Base(dataDir)+".nestguard-restore.log")
}

// checkLogFile refuses a server log inside the data directory.
func checkLogFile(logFile, dataDir string) error {
	abs, err := filepath.Abs(logFile)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(dataDir, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return fmt.Errorf("--log-file %s is inside the data directory %s: the next base backup would copy it; put it elsewhere", abs, dataDir)
	}
	return nil
}

// prepareLog creates the server log (and its directory) for the owner and
// returns its current size: where this recovery's lines begin.
func prepareLog(logFile string, ow owner) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(logFile), 0o700); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("server log: %w", err)
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("server log: %w", err)
	}
	if os.Geteuid() == 0 && ow.known {
		if err := os.Chown(logFile, ow.uid, ow.gid); err != nil {
			return 0, fmt.Errorf("server log: %w", err)
		}
	}
	return fi.Size(), nil
}

// serverEnv is the environment the restored server runs with: this
// process's, without a repository passphrase, which would otherwise be
// readable in the server's /proc environ (restore_command names its key
// or password file instead).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NESTGUARD_PASSWORD=") {
			env = append(env, kv)
		}
	}
	return env
}

// connTarget finds where the restored server will listen: the port given
// or configured, and its first Unix socket directory ("" for TCP on
// localhost), asking postgres -C so that every configuration file counts.
func connTarget(ctx context.Context, bins *serverBins, o RestoreOptions, ow owner) (int, string, error) {
	show := func(name string) (string, error) {
		cmd := exec.CommandContext(ctx, bins.postgres, "-D", o.TargetDir, "-C", name)
		cmd.SysProcAttr = ow.credential()
		cmd.Dir = o.TargetDir
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(ee.Stderr)))
			}
			return "", fmt.Errorf("reading %s of the restored configuration (postgres -C): %w", name, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	port := o.Port
	if port == 0 {
		s, err := show("port")
		if err != nil {
			return 0, "", err
		}
		if port, err = strconv.Atoi(s); err != nil {
			return 0, "", fmt.Errorf("port %q: %w", s, err)
		}
	}
	dirs, err := show("unix_socket_directories")
	if err != nil {
		return 0, "", err
	}
	for d := range strings.SplitSeq(dirs, ",") {
		d = strings.TrimSpace(d)
		if d != "" && !strings.HasPrefix(d, "@") { // abstract sockets are not paths
			return port, d, nil
		}
	}
	return port, "", nil
}

// waitTarget polls the recovering server until it paused at the target or
// was promoted, and records the recovery point.
func waitTarget(ctx context.Context, dataDir string, port int, sockDir string, ow owner, action string, deadline time.Time, rp *RecoveryPoint) error {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return err
	}
	cfg.Host, cfg.Port = sockDir, uint16(port)
	if sockDir == "" {
		cfg.Host = "localhost"
	}
	if os.Getenv("PGUSER") == "" && ow.name != "" {
		cfg.User = ow.name
	}
	if os.Getenv("PGDATABASE") == "" {
		cfg.Database = "postgres"
	}
	cfg.ConnectTimeout = 10 * time.Second
	var (
		conn    *pgx.Conn
		lastErr error
	)
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		if time.Now().After(deadline) {
			return fmt.Errorf("recovery did not reach its target within the time allowed (last: %v)", lastErr)
		}
		if conn == nil {
			conn, lastErr = pgx.ConnectConfig(ctx, cfg)
		}
		if conn != nil {
			done, err := pollRecovery(ctx, conn, action, rp)
			if err == nil && done {
				return nil
			}
			if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && !strings.HasPrefix(pe.Code, "57") {
				// An SQL error, not a shutdown (class 57): asking again
				// would fail the same way.
				return fmt.Errorf("reading the recovery state: %w", err)
			}
			if err != nil {
				lastErr = err
				conn.Close(context.WithoutCancel(ctx))
				conn = nil
			}
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if conn == nil {
			if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("the server stopped during recovery (%v)", lastErr)
			}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pollRecovery reads the recovery state once; done reports the target
// reached. Errors from the server itself (not the connection) are final.
func pollRecovery(ctx context.Context, conn *pgx.Conn, action string, rp *RecoveryPoint) (bool, error) {
	var (
		inRecovery bool
		lsn        *string
		last       *time.Time
		version    int
	)
	err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(),
		current_setting('server_version_num')::int`).Scan(&inRecovery, &lsn, &last, &version)
	if err != nil {
		return false, err
	}
	rp.setReplayed(lsn, last)
	if !inRecovery {
		rp.State = "promoted"
		var tli string
		if err := conn.QueryRow(ctx, `SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)`).Scan(&tli); err == nil {
			if n, err := strconv.ParseUint(tli, 16, 32); err == nil {
				rp.Timeline = uint32(n)
			}
		}
		return true, nil
	}
	if action != ActionPause {
		return false, nil
	}
	// Only during recovery: these functions fail once it ended.
	q := `SELECT pg_get_wal_replay_pause_state() = 'paused'`
	if version < 140000 {
		q = `SELECT pg_is_wal_replay_paused()`
	}
	var paused bool
	if err := conn.QueryRow(ctx, q).Scan(&paused); err != nil {
		return false, err
	}
	if paused {
		rp.State = "paused"
		// Replay may have gone on between the first query and the pause:
		// read where it stopped again, now that it stands still.
		err := conn.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()`).Scan(&lsn, &last)
		if err != nil {
			return false, err
		}
		rp.setReplayed(lsn, last)
	}
	return paused, nil
}

// setReplayed records the replay position and last transaction time the
// server reported.
func (rp *RecoveryPoint) setReplayed(lsn *string, last *time.Time) {
	if lsn != nil {
		if l, err := ParseLSN(*lsn); err == nil {
			rp.ReplayLSN = &l
		}
	}
	if last != nil {
		t := last.UTC()
		rp.LastCommit = &t
	}
}

// waitExit waits for the postmaster to exit (recovery_target_action=shutdown).
func waitExit(ctx context.Context, dataDir string, deadline time.Time) error {
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("the server did not shut down at the recovery target within the time allowed")
}

// stopMessage returns the server's report of where recovery stopped,
// from what the server logged after offset from.
func stopMessage(logFile string, from int64) string {
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return ""
	}
	var stopping, last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if i := strings.Index(l, "recovery stopping "); i >= 0 {
			stopping = l[i:]
		}
		if i := strings.Index(l, "last completed transaction was at log time "); i >= 0 {
			last = l[i:]
		}
	}
	if stopping != "" {
		return stopping
	}
	return last
}

// logTail returns the last n lines the server logged after offset from.
func logTail(p string, from int64, n int) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if from <= int64(len(b)) {
		b = b[from:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
