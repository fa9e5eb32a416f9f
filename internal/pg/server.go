package pg

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nestguard/nestguard/internal/pgmeta"
)

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

// ServerBins are the PostgreSQL programs that run a server.
type ServerBins struct{ PGCtl, Postgres string }

// FindServerBins finds pg_ctl and postgres: in dir if given, else on
// $PATH, else in the newest /usr/lib/postgresql/<version>/bin.
func FindServerBins(dir string) (*ServerBins, error) {
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
	var b ServerBins
	var err error
	if b.PGCtl, err = look("pg_ctl"); err != nil {
		return nil, err
	}
	if b.Postgres, err = look("postgres"); err != nil {
		return nil, err
	}
	return &b, nil
}

// tool returns the path of another PostgreSQL program of the same
// installation as pg_ctl (whose path may be a link to it, as on
// $PATH), else the name, for $PATH.
func (b *ServerBins) tool(name string) string {
	for _, p := range []string{b.PGCtl, b.Postgres} {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if t := filepath.Join(filepath.Dir(real), name); exists(t) {
				return t
			}
		}
		if t := filepath.Join(filepath.Dir(p), name); exists(t) {
			return t
		}
	}
	return name
}

// versionOf reads the major version of /usr/lib/postgresql/<v>/bin/x.
func versionOf(p string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
	return v
}

// RestoredServer is the PostgreSQL server of a restored data directory, run as
// the directory's owner when this process is root. Restore starts it with
// RestoreOptions.Start; a caller that goes on using the cluster (a
// recovery drill) stops it with Stop.
type RestoredServer struct {
	Bins    *ServerBins
	DataDir string
	Owner   Owner
	Port    int    // 0 = the port the configuration says
	LogFile string // "" = DefaultLogFile(DataDir); never inside DataDir
}

func (s *RestoredServer) logFile() string {
	if s.LogFile == "" {
		return DefaultLogFile(s.DataDir)
	}
	return s.LogFile
}

// Recover starts the server of a data directory configured for archive
// recovery and waits, at most timeout, until recovery reached its target
// and did action there (ActionPause: paused, ActionPromote: promoted,
// ActionShutdown: the server exited).
//
// How a promotion at a target happens is p (see Promotion).
func (s *RestoredServer) Recover(ctx context.Context, action string, p Promotion, timeout time.Duration) (*RecoveryPoint, error) {
	logFile, logStart, rp, err := s.beforeStart(ctx)
	if err != nil {
		return nil, err
	}
	port, sockDir := rp.Port, rp.SocketDir
	if p != PromoteAsConfigured && action == ActionPromote {
		// Without hot_standby a pause is a shutdown.
		hs, err := s.show(ctx, "hot_standby")
		if err != nil {
			return nil, err
		}
		if hs != "on" {
			p = PromoteAsConfigured
		}
	} else {
		p = PromoteAsConfigured
	}
	args := []string{"-D", s.DataDir, "-l", logFile}
	var opts []string
	if s.Port != 0 {
		opts = append(opts, "-p "+strconv.Itoa(s.Port))
	}
	if p != PromoteAsConfigured {
		opts = append(opts, "-c recovery_target_action="+ActionPause)
	}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, " "))
	}
	if action == ActionShutdown {
		// The server exits once at the target: pg_ctl -w would call that a
		// failed start.
		args = append(args, "-W", "start")
	} else {
		args = append(args, "-w", "-t", pgCtlSeconds(timeout), "start")
	}
	// Started to pause at the target, and no promotion requested yet.
	paused := p != PromoteAsConfigured
	// What pg_control says before the start: waitExit tells a server
	// that has not started yet from one that ran and exited.
	ctlBefore, _ := os.ReadFile(filepath.Join(s.DataDir, controlFile))
	if out, err := s.pgCtl(ctx, args...).CombinedOutput(); err != nil {
		return rp, s.goesOn(ctx, action, paused, s.startFailed(err, out, logFile, logStart, true))
	}
	deadline := time.Now().Add(timeout)
	withLog := func(err error) error {
		return s.goesOn(ctx, action, paused, fmt.Errorf("%w\nserver log %s:\n%s", err, logFile, logTail(logFile, logStart, 30)))
	}
	switch {
	case action == ActionShutdown:
		if err := waitExit(ctx, s.DataDir, ctlBefore, deadline); err != nil {
			return rp, withLog(err)
		}
		rp.State = "shut down"
	case p == PromoteEarly:
		// Requested now, taken when recovery pauses at the target.
		if err := s.promote(ctx); err != nil {
			return rp, s.goesOn(ctx, action, paused, err)
		}
		paused = false
		if err := waitTarget(ctx, s.DataDir, port, sockDir, s.Owner, ActionPromote, deadline, rp); err != nil {
			return rp, withLog(err)
		}
		if err := checkStoppedAtTarget(s.DataDir, rp.Timeline); err != nil {
			return rp, withLog(err)
		}
	case p == PromoteAfterPause:
		if err := waitTarget(ctx, s.DataDir, port, sockDir, s.Owner, ActionPause, deadline, rp); err != nil {
			return rp, withLog(err)
		}
		if err := s.checkPausedAtTarget(ctx, rp); err != nil {
			return rp, withLog(err)
		}
		if rp.State != "promoted" { // (promoted already: hot standby was not active at the target)
			if err := s.promote(ctx); err != nil {
				return rp, s.goesOn(ctx, action, paused, err)
			}
			paused = false
			if err := waitTarget(ctx, s.DataDir, port, sockDir, s.Owner, ActionPromote, deadline, rp); err != nil {
				return rp, withLog(err)
			}
		}
	default:
		if err := waitTarget(ctx, s.DataDir, port, sockDir, s.Owner, action, deadline, rp); err != nil {
			return rp, withLog(err)
		}
		if err := s.checkPausedAtTarget(ctx, rp); err != nil {
			return rp, withLog(err)
		}
	}
	rp.Message = stopMessage(logFile, logStart)
	return rp, nil
}

// beforeStart is what both starts (Recover, StartStandby) do first: the
// log prepared (it is appended to: only what this start writes is its,
// from logStart on; an earlier restore into the same place left its
// lines), and where the server will listen, in rp.
func (s *RestoredServer) beforeStart(ctx context.Context) (logFile string, logStart int64, rp *RecoveryPoint, err error) {
	logFile = s.logFile()
	if logStart, err = prepareLog(logFile, s.Owner); err != nil {
		return "", 0, nil, err
	}
	port, sockDir, err := s.connTarget(ctx)
	if err != nil {
		return "", 0, nil, err
	}
	return logFile, logStart, &RecoveryPoint{Port: port, SocketDir: sockDir}, nil
}

// StartStandby starts the server of a data directory configured as a
// standby (RecoveryConfig.Standby) and waits, at most timeout, until it
// is consistent and answers in recovery (hot_standby on); with
// hot_standby off pg_ctl's wait, which ends once recovery began, is all
// there is (no connections to ask). The server
// is left running, in recovery: it replays what is archived (and
// streamed, with primary_conninfo) until it is promoted.
func (s *RestoredServer) StartStandby(ctx context.Context, timeout time.Duration) (*RecoveryPoint, error) {
	logFile, logStart, rp, err := s.beforeStart(ctx)
	if err != nil {
		return nil, err
	}
	port, sockDir := rp.Port, rp.SocketDir
	hs, err := s.show(ctx, "hot_standby")
	if err != nil {
		return nil, err
	}
	args := []string{"-D", s.DataDir, "-l", logFile}
	if s.Port != 0 {
		args = append(args, "-o", "-p "+strconv.Itoa(s.Port))
	}
	args = append(args, "-w", "-t", pgCtlSeconds(timeout), "start")
	if out, err := s.pgCtl(ctx, args...).CombinedOutput(); err != nil {
		return rp, s.startFailed(err, out, logFile, logStart, false) // Restore stops it (stopFailed)
	}
	rp.State = "standby"
	if hs != "on" {
		return rp, nil // no connections in recovery: pg_ctl's wait is all there is
	}
	if err := waitTarget(ctx, s.DataDir, port, sockDir, s.Owner, actionStandby, time.Now().Add(timeout), rp); err != nil {
		return rp, fmt.Errorf("%w\nserver log %s:\n%s", err, logFile, logTail(logFile, logStart, 30))
	}
	if rp.State != "standby" {
		return rp, fmt.Errorf("the server restored as a standby left recovery (%s): a promotion was requested (a promote signal file, or pg_promote) while it started\nserver log %s:\n%s",
			rp.State, logFile, logTail(logFile, logStart, 30))
	}
	return rp, nil
}

// probeRestoreCommand runs restore_command (cmd, as written into the
// configuration) once as the server will, as the data directory's owner
// with the server's environment, from the data directory, for a history
// file no timeline has (00000001.history): 'nestguard pg restore-wal'
// must open the repository to say it is not archived (exit 1). A command
// that cannot (a key file the owner cannot read, S3 settings missing
// from the environment) fails other than 1 there, since its destination
// is outside any standby's data directory; a standby's own calls would
// exit 1 for ever instead, and it would never become consistent while
// pg_ctl waited out --start-timeout (review). Only for nestguard's own
// command: a command of the user's may exit 1 for anything.
func (s *RestoredServer) probeRestoreCommand(ctx context.Context, cmd string) error {
	dir := filepath.Join(s.DataDir, ".nestguard-probe", "x")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(dir))
	if err := s.Owner.apply(filepath.Dir(dir), nil); err != nil {
		return err
	}
	rel := filepath.Join(".nestguard-probe", "x", "RECOVERYXLOG")
	c := exec.CommandContext(ctx, "/bin/sh", "-c", expandRestoreCommand(cmd, "00000001.history", rel))
	c.SysProcAttr = s.Owner.credential()
	c.Dir = s.DataDir
	c.Env = serverEnv()
	out, err := c.CombinedOutput()
	var ee *exec.ExitError
	if err == nil || errors.As(err, &ee) && ee.ExitCode() == 1 {
		return nil
	}
	return fmt.Errorf("restore_command does not run as the server would run it (as %s, from %s): %v: %s; the standby was not started: make the repository readable for that user (its key or password file, its S3 settings in the server's environment)",
		cmp.Or(s.Owner.name, "this user"), s.DataDir, err, strings.TrimSpace(string(out)))
}

// expandRestoreCommand fills restore_command's placeholders as PostgreSQL
// does: %f the file name, %p its destination, %r a restartpoint file
// (the first segment), %% a percent sign.
func expandRestoreCommand(cmd, f, p string) string {
	var b strings.Builder
	for i := 0; i < len(cmd); i++ {
		if cmd[i] == '%' && i+1 < len(cmd) {
			switch cmd[i+1] {
			case 'f':
				b.WriteString(f)
				i++
				continue
			case 'p':
				b.WriteString(p)
				i++
				continue
			case 'r':
				b.WriteString("000000010000000000000001")
				i++
				continue
			case '%':
				b.WriteByte('%')
				i++
				continue
			}
		}
		b.WriteByte(cmd[i])
	}
	return b.String()
}

// stopFailed stops a standby Restore started whose start or catch-up
// failed (err), and says so: one stuck for good looks healthy (in
// recovery, answering, replaying nothing), and one promoted while it
// started would archive a timeline of its own into the repository (so
// it is stopped at once, "immediate"). The stop outlives ctx: an
// interrupted restore stops its standby too.
func (s *RestoredServer) stopFailed(ctx context.Context, rp *RecoveryPoint, err error) error {
	if postmasterGone(s.DataDir) {
		return err
	}
	mode := "fast"
	if rp != nil && rp.State == "promoted" {
		mode = "immediate"
	}
	if serr := s.Stop(context.WithoutCancel(ctx), mode, time.Minute); serr != nil {
		return fmt.Errorf("%w\nstopping the standby failed: %v; it may still run: pg_ctl -D %s stop", err, serr, s.DataDir)
	}
	return fmt.Errorf("%w\nthe standby was stopped; start it again once that is fixed (pg_ctl -D %s start)", err, s.DataDir)
}

// actionStandby is waitTarget's action for a standby: done once the
// server answers, in recovery.
const actionStandby = "standby"

// Promotion is how Recover promotes a server at its recovery target.
//
// PostgreSQL's own promotion (recovery_target_action = promote) ends
// recovery with an immediate checkpoint that writes every buffer replay
// dirtied before the server opens: seconds to minutes, growing with
// shared_buffers. A promotion requested with pg_ctl promote ends it as a
// standby's failover does, with an end-of-recovery WAL record and the
// checkpoint in the background, crash-safe through the WAL kept in
// pg_wal. PostgreSQL takes such a request during recovery only where it
// checks for one: while paused, in a recovery_min_apply_delay wait, and in
// standby mode when WAL runs out; an archive recovery (recovery.signal)
// replays on to its target. So the server is started with
// recovery_target_action = pause on its command line (which outranks the
// configuration files; they keep promote), and promoted there.
type Promotion int

const (
	// PromoteAsConfigured leaves the promotion to the server's settings.
	PromoteAsConfigured Promotion = iota
	// PromoteAfterPause waits until recovery paused at the target, then
	// promotes. PostgreSQL 14 and later end a pause for a promotion, but
	// notice the request only within a second (the pause loop's sleep).
	PromoteAfterPause
	// PromoteEarly requests the promotion as soon as the server accepts
	// connections; recovery goes on to the target, pauses there, finds
	// the request at once and promotes. Checked afterwards: the new
	// timeline's history file must name the target as where recovery
	// stopped. For PostgreSQL 14 to 17, whose code is read for it.
	PromoteEarly
)

// PromotionFor returns the promotion for a server of version (as
// server_version_num) restored to a target (latest: the end of the
// archive, where recovery_target_action does not apply).
func PromotionFor(version int, latest bool) Promotion {
	switch {
	case latest || version < 140000:
		return PromoteAsConfigured
	case version < 180000:
		return PromoteEarly
	default:
		return PromoteAfterPause
	}
}

// promote runs pg_ctl promote. If it fails because recovery already
// ended (the server promoted itself), that is not an error.
func (s *RestoredServer) promote(ctx context.Context) error {
	out, err := s.pgCtl(ctx, "-D", s.DataDir, "-W", "promote").CombinedOutput()
	if err == nil {
		return nil
	}
	if strings.Contains(string(out), "not in standby mode") {
		return nil // recovery is over: waitTarget reads where it ended
	}
	return fmt.Errorf("pg_ctl promote failed: %v: %s (the server stays in recovery; once it paused at the target, promote it with 'pg_ctl -D %s promote' or SELECT pg_promote())",
		err, strings.TrimSpace(string(out)), s.DataDir)
}

// checkStoppedAtTarget reads why recovery ended from the history file of
// the timeline it promoted onto: PostgreSQL writes "no recovery target
// specified" there when recovery ended without reaching its target.
func checkStoppedAtTarget(dataDir string, tli uint32) error {
	if tli == 0 {
		return errors.New("the promoted server's timeline is unknown: cannot tell where recovery stopped")
	}
	p := filepath.Join(dataDir, "pg_wal", fmt.Sprintf("%08X.history", tli))
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("reading where recovery stopped: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := lines[len(lines)-1]
	f := strings.SplitN(last, "\t", 3)
	if len(f) < 3 || strings.TrimSpace(f[2]) == "no recovery target specified" {
		return fmt.Errorf("recovery ended without reaching its target (%s: %q): the server was promoted at the wrong point; do not use it, restore again", p, last)
	}
	return nil
}

// goesOn adds to err, when ctx ended (the restore was interrupted) after
// the server was started, that the server goes on recovering without
// this process, and where it will stop.
func (s *RestoredServer) goesOn(ctx context.Context, action string, paused bool, err error) error {
	if ctx.Err() == nil {
		return err
	}
	at := map[string]string{
		ActionPause:    "pauses at the target",
		ActionShutdown: "shuts down at the target",
		ActionPromote:  "is promoted at the target",
	}[action]
	if paused {
		at = "pauses at the target (it was started to, for a fast promotion): check the point reached and promote it with 'pg_ctl -D " + s.DataDir + " promote'"
	}
	return fmt.Errorf("%w\nthe server in %s was started and goes on recovering without nestguard: it %s; or stop it with 'pg_ctl -D %s stop'",
		err, s.DataDir, at, s.DataDir)
}

// Stop stops the server with pg_ctl's shutdown mode ("fast" or
// "immediate") and waits, at most timeout, until it exited. A server that
// does not run is not an error.
func (s *RestoredServer) Stop(ctx context.Context, mode string, timeout time.Duration) error {
	if postmasterGone(s.DataDir) {
		return nil
	}
	out, err := s.pgCtl(ctx, "-D", s.DataDir, "-m", mode, "-w", "-t", pgCtlSeconds(timeout), "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// hotStandbyParams are the settings a server in recovery with hot
// standby needs at least as high as the server whose WAL it replays:
// pg_controldata's label (pg_control keeps the WAL's values) and the
// setting's name.
var hotStandbyParams = [][2]string{
	{"max_connections setting", "max_connections"},
	{"max_worker_processes setting", "max_worker_processes"},
	{"max_wal_senders setting", "max_wal_senders"},
	{"max_prepared_xacts setting", "max_prepared_transactions"},
	{"max_locks_per_xact setting", "max_locks_per_transaction"},
}

// checkPausedAtTarget tells a pause at the recovery target from the one
// PostgreSQL 14 and later make, with hot standby, when the WAL raises
// one of hotStandbyParams above the restored configuration's value (a
// source that raised max_connections after the base backup): "recovery
// has paused" there, before the target, and a promotion is refused.
// Replay has written the WAL's value into pg_control by then, so a value
// there above the configuration's means that pause. pg_controldata runs
// with LC_ALL=C, for labels in English.
func (s *RestoredServer) checkPausedAtTarget(ctx context.Context, rp *RecoveryPoint) error {
	if rp.State != "paused" {
		return nil
	}
	cmd := exec.CommandContext(ctx, s.Bins.tool("pg_controldata"), "-D", s.DataDir)
	cmd.SysProcAttr = s.Owner.credential()
	cmd.Env = append(serverEnv(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("recovery paused; reading pg_control to check that it paused at the target: %w", err)
	}
	ctl := map[string]string{}
	for l := range strings.SplitSeq(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			ctl[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	for _, p := range hotStandbyParams {
		wal, err := strconv.Atoi(ctl[p[0]])
		if err != nil {
			continue // not in this version's pg_controldata
		}
		v, err := s.show(ctx, p[1])
		if err != nil {
			return err
		}
		have, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s = %q: %w", p[1], v, err)
		}
		if wal > have {
			return fmt.Errorf("recovery paused before the target, not at it: the WAL sets %s = %d, above the restored configuration's %d, and PostgreSQL pauses there with hot standby (\"insufficient parameter settings\" in its log); set %s to at least %d in the configuration of %s and restart the server (pg_ctl restart), or restore again and do that before --start",
				p[1], wal, have, p[1], wal, s.DataDir)
		}
	}
	return nil
}

// pgCtl prepares pg_ctl with args, run as the owner in the data directory.
func (s *RestoredServer) pgCtl(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.Bins.PGCtl, args...)
	cmd.SysProcAttr = s.Owner.credential()
	cmd.Dir = s.DataDir
	cmd.Env = serverEnv()
	return cmd
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
func prepareLog(logFile string, ow Owner) (int64, error) {
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
func (s *RestoredServer) connTarget(ctx context.Context) (int, string, error) {
	port := s.Port
	if port == 0 {
		v, err := s.show(ctx, "port")
		if err != nil {
			return 0, "", err
		}
		if port, err = strconv.Atoi(v); err != nil {
			return 0, "", fmt.Errorf("port %q: %w", v, err)
		}
	}
	dirs, err := s.show(ctx, "unix_socket_directories")
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

// show reads a setting of the restored configuration with postgres -C,
// so that every configuration file counts.
func (s *RestoredServer) show(ctx context.Context, name string) (string, error) {
	cmd := exec.CommandContext(ctx, s.Bins.Postgres, "-D", s.DataDir, "-C", name)
	cmd.SysProcAttr = s.Owner.credential()
	cmd.Dir = s.DataDir
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

// waitTarget polls the recovering server until it paused at the target or
// was promoted (or, for actionStandby, answers in recovery), and records
// the recovery point.
func waitTarget(ctx context.Context, dataDir string, port int, sockDir string, ow Owner, action string, deadline time.Time, rp *RecoveryPoint) error {
	cfg, err := connConfig(port, sockDir, ow)
	if err != nil {
		return err
	}
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
			if finalSQLError(err) {
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
		if conn == nil && postmasterGone(dataDir) {
			return fmt.Errorf("the server stopped during recovery (%v)", lastErr)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(pollEvery):
		}
	}
}

// postmasterGone reports whether no postmaster runs in dataDir: its
// postmaster.pid is not there.
func postmasterGone(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "postmaster.pid"))
	return errors.Is(err, fs.ErrNotExist)
}

// finalSQLError reports whether err, from a query to a recovering
// server, is an SQL error other than a shutdown (class 57): asking again
// would fail the same way. Any other error is the connection's, and a
// new one may succeed.
func finalSQLError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && !strings.HasPrefix(pe.Code, "57")
}

// pgCtlSeconds is pg_ctl's -t for timeout: whole seconds, rounded up, at
// least one (a timeout under a second was -t 0, which fails at once and
// leaves the server starting).
func pgCtlSeconds(timeout time.Duration) string {
	return strconv.Itoa(max(1, int((timeout+time.Second-1)/time.Second)))
}

// startFailed is the error of a pg_ctl start that failed: with the
// server's log, and, when the postmaster is there nonetheless (pg_ctl
// gave up waiting, the server goes on starting) and left so (goesOn),
// how to stop it.
func (s *RestoredServer) startFailed(err error, out []byte, logFile string, logStart int64, goesOn bool) error {
	msg := fmt.Sprintf("pg_ctl start: %v: %s", err, strings.TrimSpace(string(out)))
	if goesOn && !postmasterGone(s.DataDir) {
		msg += fmt.Sprintf("\nthe server in %s goes on starting without nestguard: check it, or stop it with 'pg_ctl -D %s stop'", s.DataDir, s.DataDir)
	}
	return fmt.Errorf("%s\nserver log %s:\n%s", msg, logFile, logTail(logFile, logStart, 30))
}

// connConfig is how Restore connects to the server it started: on its
// socket directory (or localhost) and port, as the data directory's
// owner unless PGUSER says otherwise, to the postgres database unless
// PGDATABASE does.
func connConfig(port int, sockDir string, ow Owner) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
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
	return cfg, nil
}

// waitReplayed polls a standby StartStandby started until it replayed
// past x, the last transaction the archive holds on its path, and
// records where it is in rp. It fails when replay stands still for stall
// before that (a segment the standby cannot read: restore-wal exits 1 on
// a standby, and the standby asks again for ever), or at deadline. A
// dropped connection is made again, as waitTarget does; a server gone
// fails at once. A delayed standby (recovery_min_apply_delay) replays
// late by design: not waited for.
func (s *RestoredServer) waitReplayed(ctx context.Context, rp *RecoveryPoint, x *XactEnd, stall time.Duration, deadline time.Time) error {
	cfg, err := connConfig(rp.Port, rp.SocketDir, s.Owner)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connecting to the standby: %w", err)
	}
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	var delay string
	if err := conn.QueryRow(ctx, "SHOW recovery_min_apply_delay").Scan(&delay); err != nil {
		return fmt.Errorf("reading the standby's recovery_min_apply_delay: %w", err)
	}
	if delay != "0" {
		return nil
	}
	var (
		at      LSN
		lastErr error // the last connection failure, while there is no connection
	)
	moved := time.Now()
	for {
		if conn == nil {
			if conn, lastErr = pgx.ConnectConfig(ctx, cfg); lastErr != nil {
				conn = nil
			}
		}
		if conn != nil {
			var (
				lsn  *string
				last *time.Time
			)
			err := conn.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()").Scan(&lsn, &last)
			switch {
			case err == nil:
				rp.setReplayed(lsn, last)
			case finalSQLError(err):
				return fmt.Errorf("reading the standby's replay position: %w", err)
			default:
				// The connection dropped: connect again while the stall
				// allows (waitTarget does the same).
				conn.Close(context.WithoutCancel(ctx))
				conn, lastErr = nil, err
			}
		}
		switch {
		case conn != nil && rp.replayedPast(x):
			return nil
		case conn != nil && rp.ReplayLSN != nil && *rp.ReplayLSN != at:
			at, moved = *rp.ReplayLSN, time.Now()
		case conn == nil && postmasterGone(s.DataDir):
			return fmt.Errorf("the standby stopped while it replayed the archive, at %s (%v)", at, lastErr)
		case time.Since(moved) > stall && conn == nil:
			return fmt.Errorf("the standby did not answer for %s while it replayed the archive, at %s: %w", stall, at, lastErr)
		case time.Since(moved) > stall:
			return fmt.Errorf("the standby stopped replaying at %s, before the last transaction the archive holds on its path (%s): it cannot read the WAL after that point (the server log below names the file); run 'nestguard verify --read-data'",
				at, x)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the standby did not replay the archive's last transaction (%s) within the time allowed: it is at %s", x, at)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pollEvery is how often waitTarget asks: the recovery time it reports
// includes up to that much of waiting. Each poll is one small query.
const pollEvery = 20 * time.Millisecond

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
	if action == actionStandby && inRecovery {
		rp.State = "standby"
		return true, nil
	}
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

// replayedPast reports whether replay went past transaction end x.
func (rp *RecoveryPoint) replayedPast(x *XactEnd) bool {
	return rp.ReplayLSN != nil && *rp.ReplayLSN > x.LSN
}

// setReplayed records the replay position and last transaction time the
// server reported.
func (rp *RecoveryPoint) setReplayed(lsn *string, last *time.Time) {
	if lsn != nil {
		if l, err := pgmeta.ParseLSN(*lsn); err == nil {
			rp.ReplayLSN = &l
		}
	}
	if last != nil {
		t := last.UTC()
		rp.LastCommit = &t
	}
}

// waitExit waits for the postmaster to exit at the recovery target
// (recovery_target_action=shutdown). pg_ctl -W start returns before the
// postmaster wrote postmaster.pid, so its absence alone says nothing:
// the server ran once postmaster.pid was seen or pg_control changed from
// ctlBefore, and it stopped at the target only if pg_control then says
// it shut down in recovery. A server that failed during recovery (for
// example FATAL: the WAL ends before the target) is an error.
func waitExit(ctx context.Context, dataDir string, ctlBefore []byte, deadline time.Time) error {
	ctlPath := filepath.Join(dataDir, controlFile)
	ran := false
	for time.Now().Before(deadline) {
		_, err := os.Stat(filepath.Join(dataDir, "postmaster.pid"))
		if err == nil {
			ran = true
		} else if errors.Is(err, fs.ErrNotExist) {
			b, err := os.ReadFile(ctlPath)
			if err != nil {
				return fmt.Errorf("the server exited; reading its state: %w", err)
			}
			ran = ran || !bytes.Equal(b, ctlBefore)
			if ran {
				c, err := parseControl(b)
				if err != nil {
					return fmt.Errorf("the server exited; reading its state: %w", err)
				}
				if c.State != dbShutdownedInRecovery {
					return fmt.Errorf("the server exited during recovery without reaching the target (pg_control state %d, not shut down in recovery)", c.State)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(pollEvery):
		}
	}
	if !ran {
		return errors.New("the server did not start within the time allowed")
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
