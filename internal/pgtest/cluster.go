package pgtest

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configure a cluster.
type Options struct {
	// ArchiveCommand is archive_command, with %p and %f as PostgreSQL
	// substitutes them. Start: "" leaves archiving off. StartExisting: ""
	// keeps what the data directory's configuration says, so a restored
	// cluster archives where its source did.
	ArchiveCommand string
	// Env is extra environment for the postmaster, and so for the commands
	// it runs (archive_command, restore_command), e.g.
	// "NESTGUARD_PASSWORD_FILE=/path". The test's own PG* and NESTGUARD_*
	// variables are not passed on: a command works only with what it is
	// given here.
	Env []string
	// Settings are extra postgresql.conf settings; they win over the
	// harness's defaults.
	Settings map[string]string
	// Checksums runs initdb --data-checksums (Start only).
	Checksums bool
	// NoWait returns from StartExisting as soon as the postmaster runs,
	// without waiting for it to accept connections: for a recovery that
	// may end in shutdown (recovery_target_action=shutdown) or take long.
	// Use WaitReady or WaitStopped afterwards.
	NoWait bool
}

// Cluster is a running (or stopped) throw-away PostgreSQL server.
type Cluster struct {
	Dir       string // the cluster's temporary directory (removed at test end)
	DataDir   string
	SocketDir string
	Port      int
	BinDir    string
	LogFile   string

	opts Options
	cred *syscall.Credential

	mu      sync.Mutex
	conn    *pgx.Conn // shared by Exec and QueryString
	running bool
	proc    *exec.Cmd     // the postmaster
	exited  chan struct{} // closed when it has exited
}

// Timeouts: every wait of the harness is bounded.
const (
	startTimeout = 120 * time.Second
	stopTimeout  = 60 * time.Second
	toolTimeout  = 10 * time.Minute
	sqlTimeout   = 2 * time.Minute
)

// Start initdb's a new cluster in a temporary directory and starts it on a
// free loopback port with wal_level=replica, archiving when
// o.ArchiveCommand is set, and a small max_wal_size so that tests see
// several segments. The server is stopped and the directory removed when
// the test ends; the tail of the server log is printed if the test failed.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	c := newCluster(t, o)
	c.DataDir = filepath.Join(c.Dir, "data")

	args := []string{"-D", c.DataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
		// initdb's own final flush only: the server itself runs with fsync on.
		"--no-sync"}
	if o.Checksums {
		args = append(args, "--data-checksums")
	}
	cmd := exec.Command(filepath.Join(c.BinDir, "initdb"), args...)
	c.setup(cmd)
	run(t, cmd)

	conf := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": c.SocketDir,
		"wal_level":               "replica",
		"max_wal_size":            "64MB",
		"min_wal_size":            "32MB",
		"shared_buffers":          "32MB",
		"max_connections":         "40",
		"log_line_prefix":         "%m [%p] ",
		"log_min_messages":        "info",
		"log_checkpoints":         "on",
		"archive_mode":            "off",
	}
	if o.ArchiveCommand != "" {
		conf["archive_mode"] = "on"
		conf["archive_command"] = o.ArchiveCommand
	}
	maps.Copy(conf, o.Settings)
	var b strings.Builder
	b.WriteString("\n# pgtest\n")
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		fmt.Fprintf(&b, "%s = %s\n", k, confQuote(conf[k]))
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("writing postgresql.conf: %v", err)
	}
	// The port goes on the command line so that it is never copied into a
	// base backup's postgresql.conf.
	c.start(t, nil, true)
	return c
}

// StartExisting starts a server on dataDir (a directory nestguard restored,
// say) with the same conventions as Start: a free port, sockets in a new
// temporary directory, logging to a file there, running as postgres when
// root (dataDir is given to postgres and set to mode 0700). Settings are
// passed on the command line, so they win over the data directory's
// postgresql.conf and postgresql.auto.conf.
func StartExisting(t testing.TB, dataDir string, o Options) *Cluster {
	t.Helper()
	c := newCluster(t, o)
	c.DataDir = dataDir
	Chown(t, dataDir)
	if err := os.Chmod(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	set := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": c.SocketDir,
	}
	if o.ArchiveCommand != "" {
		set["archive_mode"] = "on"
		set["archive_command"] = o.ArchiveCommand
	}
	maps.Copy(set, o.Settings)
	c.start(t, set, !o.NoWait)
	return c
}

func newCluster(t testing.TB, o Options) *Cluster {
	t.Helper()
	c := &Cluster{BinDir: Require(t), Dir: TempDir(t), opts: o, cred: Credential(t)}
	c.SocketDir = filepath.Join(c.Dir, "sock")
	c.LogFile = filepath.Join(c.Dir, "postgres.log")
	if err := os.Mkdir(c.SocketDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.LogFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	Chown(t, c.Dir)
	// Cleanups run last-registered first: stop, then show the log, then
	// (TempDir's) remove the directory.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PostgreSQL log %s (tail):\n%s", c.LogFile, c.LogTail())
		}
	})
	t.Cleanup(func() { c.shutdown(t) })
	return c
}

// setup makes cmd run as the server's user, in the cluster directory, with
// the cluster's environment.
func (c *Cluster) setup(cmd *exec.Cmd) {
	cmd.Dir = c.Dir
	cmd.Env = c.environ()
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
}

// environ is the environment of the server and the tools: the test's,
// without variables that would point them elsewhere or leak a passphrase,
// plus Options.Env.
func (c *Cluster) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "NESTGUARD_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+c.Dir, "LC_ALL=C")
	if c.Port != 0 {
		env = append(env, "PGHOST="+c.SocketDir, "PGPORT="+strconv.Itoa(c.Port),
			"PGUSER=postgres", "PGDATABASE=postgres", "PGSSLMODE=disable")
	}
	return append(env, c.opts.Env...)
}

// start runs the postmaster on a free port; set are -c settings for the
// command line. A port taken between choosing and binding is retried.
//
// The postmaster is this process's child, not pg_ctl's, so that it gets
// SIGQUIT (immediate shutdown) if the test binary dies without running its
// cleanups (a timeout, a kill): no server outlives its test.
func (c *Cluster) start(t testing.TB, set map[string]string, wait bool) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		c.Port = port
		args := []string{"-D", c.DataDir, "-c", "port=" + strconv.Itoa(port)}
		for _, k := range slices.Sorted(maps.Keys(set)) {
			args = append(args, "-c", k+"="+set[k])
		}
		logf, err := os.OpenFile(c.LogFile, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(c.BinDir, "postgres"), args...)
		c.setup(cmd)
		cmd.Stdout, cmd.Stderr = logf, logf
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
		cmd.SysProcAttr.Setpgid = true // a terminal's ^C goes to the test, which stops the server cleanly
		err = cmd.Start()
		logf.Close()
		if err != nil {
			t.Fatalf("starting postgres: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		c.mu.Lock()
		c.proc, c.exited, c.running = cmd, exited, true
		c.mu.Unlock()
		if !wait {
			c.waitPID(t)
			return
		}
		if lastErr = c.waitReady(startTimeout); lastErr == nil {
			return
		}
		c.shutdown(t)
		if log := c.LogTail(); !strings.Contains(log, "could not bind") && !strings.Contains(log, "already in use") {
			break
		}
	}
	t.Fatalf("starting PostgreSQL on %s: %v\nserver log:\n%s", c.DataDir, lastErr, c.LogTail())
}

// waitReady waits until the server accepts connections, failing early if
// it exits.
func (c *Cluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return errors.New("postgres exited")
		default:
		}
		var conn *pgx.Conn
		if conn, err = c.connect(5 * time.Second); err == nil {
			ctx, cancel := timeoutCtx(5 * time.Second)
			conn.Close(ctx)
			cancel()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("no connection within %v: %w", timeout, err)
}

// waitPID waits until the postmaster has written its pid file (pg_ctl
// promote needs it).
func (c *Cluster) waitPID(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(c.DataDir, "postmaster.pid")); err == nil {
			return
		}
		select {
		case <-c.exited:
			t.Fatalf("postgres exited at once\nserver log:\n%s", c.LogTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("postmaster did not start within %v\nserver log:\n%s", startTimeout, c.LogTail())
}

// FreePort returns a loopback TCP port that was free a moment ago, for a
// server a test starts itself (a restored cluster).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// StopServer stops the server running in dataDir, if one does, with
// pg_ctl's shutdown mode ("fast", "immediate"): for servers a test did not
// start through Start, such as one a restore started.
func StopServer(t testing.TB, binDir, dataDir, mode string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); err != nil {
		return
	}
	cmd := exec.Command(filepath.Join(binDir, "pg_ctl"), "-D", dataDir, "-m", mode, "-w", "-t", "60", "stop")
	AsPostgres(t, cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("stopping the server in %s: %v: %s", dataDir, err, out)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop shuts the server down (fast mode: sessions are disconnected, a
// shutdown checkpoint is written). Stopping a stopped cluster does nothing.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.shutdown(t); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) shutdown(t testing.TB) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		ctx, cancel := timeoutCtx(5 * time.Second)
		c.conn.Close(ctx)
		cancel()
		c.conn = nil
	}
	if !c.running {
		return nil
	}
	c.running = false
	signal := func(sig syscall.Signal, wait time.Duration) bool {
		select {
		case <-c.exited:
			return true
		default:
		}
		c.proc.Process.Signal(sig)
		select {
		case <-c.exited:
			return true
		case <-time.After(wait):
			return false
		}
	}
	// SIGINT is PostgreSQL's fast shutdown: sessions are disconnected and a
	// shutdown checkpoint is written. Never leave a server behind a test.
	if signal(syscall.SIGINT, stopTimeout) {
		return nil
	}
	if !signal(syscall.SIGQUIT, 10*time.Second) {
		signal(syscall.SIGKILL, 10*time.Second)
	}
	return fmt.Errorf("PostgreSQL did not shut down within %v and was killed\nserver log:\n%s", stopTimeout, c.LogTail())
}

// Promote ends recovery (pg_ctl promote) and waits until the server runs
// read-write on its new timeline.
func (c *Cluster) Promote(t testing.TB) {
	t.Helper()
	c.Run(t, "pg_ctl", "-D", c.DataDir, "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)), "promote")
}

// WaitReady waits until the server accepts connections.
func (c *Cluster) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := c.waitReady(timeout); err != nil {
		t.Fatalf("PostgreSQL does not accept connections: %v\nserver log:\n%s", err, c.LogTail())
	}
}

// WaitStopped waits until the server has exited by itself (for example
// after recovery_target_action=shutdown).
func (c *Cluster) WaitStopped(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.exited:
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	case <-time.After(timeout):
		t.Fatalf("PostgreSQL still running after %v\nserver log:\n%s", timeout, c.LogTail())
	}
}

// LogTail returns the last lines of the server log.
func (c *Cluster) LogTail() string {
	b, err := os.ReadFile(c.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(string(b), 60)
}

// confQuote quotes a postgresql.conf value.
func confQuote(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
