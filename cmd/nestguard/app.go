package main

import (
	"bytes"
	"context"
	"crypto/fips140"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nestguard/nestguard/internal/backend/location"
	"github.com/nestguard/nestguard/internal/class"
	"github.com/nestguard/nestguard/internal/compress"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/secretfile"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// app holds the global flags and what commands share.
type app struct {
	configFile   string
	metricsFile  string
	repo         string
	passwordFile string
	keyFile      string
	keySlot      string
	jsonOut      bool
	quiet        bool
	verbose      int
	noProgress   bool
	cpuProfile   string
	traceFile    string
	memProfile   string
	stopProfile  func()

	s3Endpoint   string
	s3Region     string
	s3PathStyle  bool
	caCert       string
	insecureHTTP bool
	// s3Profile is --s3-profile, s3ProfileOrigin where it was given (for
	// messages: the flag, its variable or the config file).
	s3Profile, s3ProfileOrigin string

	// classes are the data classes of the config file (none without
	// one), classFile the file they come from.
	classes   class.Set
	classFile string
	// origins says where flags got their values (originOf): set by
	// applyConfig for those given on the command line or by the config
	// file.
	origins map[string]origin
	// envErrs are the variables whose value does not parse (envBool),
	// refused as usage errors before a command runs.
	envErrs []error

	system
	log *slog.Logger
	// audit is the running command's audit record in the making (nil:
	// not recorded); auditSpool is --audit-spool.
	audit      *auditRun
	auditSpool string
	// cacheDir, noCache and cacheMinBlobs set where and from what size
	// the index of a repository is kept in a local file (indexCacheDir).
	cacheDir      string
	noCache       bool
	cacheMinBlobs int
	// args are the command line's arguments, without the program's name.
	args []string

	// The running command, for --metrics-file (see metrics.go).
	command string
	started time.Time
	values  map[string]float64
}

// system is what a run of nestguard takes from its process: standard
// streams, environment, its own executable, the memory limit. main passes
// the process's own; tests pass buffers and their own environment to run
// commands in-process, leaving the test process's limit alone.
type system struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	executable     func() (string, error)
	setMemoryLimit func(int64) int64 // nil: the runtime's limit stays
	setGCPercent   func(int) int     // nil: the runtime's setting stays
	// kdf, when set, is the key derivation cost of the key slots init and
	// key add create, in place of the default (Argon2id or PBKDF2 at full
	// strength). Only in-process tests set it, to cheap parameters; the
	// binary has no flag or variable that reaches it.
	kdf *crypto.KDFParams
	// now, when set, is the clock retention decisions (forget, prune,
	// pg status --keep-pitr) count back from, in place of time.Now. Only
	// in-process tests set it, to judge backups taken seconds apart by
	// rules counted in days; the binary has no flag or variable that
	// reaches it.
	now func() time.Time
	// fipsOnly is whether this process runs with GODEBUG=fips140=only;
	// commands that PostgreSQL runs for it (restore_command) then run so
	// too.
	fipsOnly bool
	// s3IdleTimeout, when set, is how long an S3 request may wait for the
	// store without progress, in place of s3.DefaultIdleTimeout. Only
	// in-process tests set it, to see a silent store fail in seconds; the
	// binary has no flag or variable that reaches it.
	s3IdleTimeout time.Duration
}

// processSystem is the system of this process.
func processSystem() system {
	return system{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, lookupEnv: os.LookupEnv,
		executable: os.Executable, setMemoryLimit: debug.SetMemoryLimit, setGCPercent: debug.SetGCPercent,
		fipsOnly: fips140.Enforced()}
}

func newApp(sys system) *app { return &app{system: sys} }

// clock returns the time retention decisions count back from.
func (a *app) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

// getenv returns the environment variable key, "" when it is not set.
func (a *app) getenv(key string) string {
	v, _ := a.lookupEnv(key)
	return v
}

// stdinTerminal returns stdin's descriptor and whether it is a terminal.
func (a *app) stdinTerminal() (int, bool) {
	f, ok := a.stdin.(interface{ Fd() uintptr })
	if !ok {
		return -1, false
	}
	return int(f.Fd()), term.IsTerminal(int(f.Fd()))
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "nestguard",
		Short: "Encrypted, deduplicated, write-once backups with proof of recovery",
		Long: `nestguard backs up files and PostgreSQL databases into a repository on a
local directory or S3-compatible object storage. Everything stored is
deduplicated, compressed with zstd where that makes it smaller, and
encrypted with XAES-256-GCM (c2sp.org/XAES-256-GCM); no stored object is
ever rewritten, so S3 Object Lock and append-only storage work.

The repository is chosen with --repo or NESTGUARD_REPO. The passphrase is
read from NESTGUARD_PASSWORD, from the file named by --password-file (or
NESTGUARD_PASSWORD_FILE), or asked for on a terminal; never from the
command line. A passphrase or key file that group or others may read is
used with a warning.

Exit codes: 0 success, 1 error, 2 usage error, 3 partial (the snapshot or
restore was made, but some files were unreadable or damaged, or changed
while they were read; a list left out objects it could not read), 4 retained (forget: a snapshot named by ID is kept
by a floor, hold or Object Lock), 200 (pg restore-wal) a WAL file could
not be delivered, so that PostgreSQL stops its recovery, 130 and 143
stopped by SIGINT or SIGTERM.`,
		Example: `  export NESTGUARD_REPO=/srv/backup NESTGUARD_PASSWORD_FILE=/etc/nestguard/pass
  nestguard init
  nestguard backup /etc /home --tag nightly
  nestguard snapshots
  nestguard restore latest --target /tmp/restore --include /etc/hosts
  nestguard verify --read-data=10%`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version + " (zstd: " + compress.Implementation + ")",
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := errors.Join(a.envErrs...); err != nil {
				return &usageError{err}
			}
			if err := a.applyConfig(cmd); err != nil {
				return err
			}
			a.s3ProfileOrigin = a.flagOrigin(cmd.Flag("s3-profile"))
			a.setupLogging()
			a.startRun(cmd)
			a.startAudit(cmd, args)
			return a.startProfiles()
		},
		PersistentPostRun: func(*cobra.Command, []string) { a.stopProfiles() },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", a.getenv("NESTGUARD_CONFIG"), "read settings from this TOML file (env NESTGUARD_CONFIG; default "+defaultConfig+" if it exists)")
	pf.StringVarP(&a.repo, "repo", "r", a.getenv("NESTGUARD_REPO"), "repository: a directory or s3://bucket/prefix (env NESTGUARD_REPO)")
	pf.StringVar(&a.passwordFile, "password-file", a.getenv("NESTGUARD_PASSWORD_FILE"), "read the passphrase from this file (env NESTGUARD_PASSWORD_FILE)")
	pf.StringVar(&a.keyFile, "key-file", a.getenv("NESTGUARD_KEY_FILE"), "open the repository with a generated key file instead of a passphrase (env NESTGUARD_KEY_FILE; see 'key add --generate-key-file')")
	pf.StringVar(&a.keySlot, "key-slot", a.getenv("NESTGUARD_KEY_SLOT"), "try only this key slot (an id or prefix from 'key list') when unlocking; needed when a repository has more passphrase slots than one unlock tries (env NESTGUARD_KEY_SLOT)")
	pf.StringVar(&a.metricsFile, "metrics-file", a.getenv("NESTGUARD_METRICS_FILE"), "record the outcome of backup, restore, verify, copy and pg commands in this Prometheus textfile (env NESTGUARD_METRICS_FILE; see docs/monitoring.md)")
	pf.BoolVar(&a.jsonOut, "json", false, "print results as JSON")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "print only errors")
	pf.CountVarP(&a.verbose, "verbose", "v", "log more (repeat for debug)")
	pf.BoolVar(&a.noProgress, "no-progress", false, "never show progress, even on a terminal")
	pf.StringVar(&a.cpuProfile, "cpu-profile", "", "write a pprof CPU profile of the command to this file")
	pf.StringVar(&a.memProfile, "mem-profile", "", "write a pprof heap profile at the end of the command to this file")
	pf.StringVar(&a.traceFile, "trace", "", "write a runtime execution trace of the command to this file (go tool trace)")
	pf.MarkHidden("cpu-profile")
	pf.MarkHidden("trace")
	pf.MarkHidden("mem-profile")
	pf.StringVar(&a.s3Endpoint, "s3-endpoint", a.firstEnv(endpointEnvs...), "S3 endpoint: host[:port] (HTTPS) or a URL, https://host[:port] or, to a loopback test server only, http://host:port (env NESTGUARD_S3_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL; default AWS)")
	pf.StringVar(&a.s3Endpoint, "endpoint-url", a.firstEnv(endpointEnvs...), "the same as --s3-endpoint (the AWS CLI's name)")
	pf.StringVar(&a.s3Region, "s3-region", a.getenv("AWS_REGION"), "S3 region (env AWS_REGION)")
	pf.BoolVar(&a.s3PathStyle, "s3-path-style", a.envBool("NESTGUARD_S3_PATH_STYLE"), "use path-style S3 URLs (MinIO and most self-hosted stores) (env NESTGUARD_S3_PATH_STYLE)")
	pf.StringVar(&a.caCert, "ca-cert", a.getenv("NESTGUARD_CA_CERT"), "PEM bundle of CAs to trust for TLS to the storage (env NESTGUARD_CA_CERT)")
	pf.StringVar(&a.s3Profile, "s3-profile", a.getenv("NESTGUARD_S3_PROFILE"), "take the S3 credentials from this profile of the shared AWS files only (its keys, credential_process or role), as the AWS CLI's --profile: AWS_ACCESS_KEY_ID and AWS_PROFILE are then not read (env NESTGUARD_S3_PROFILE; default: the AWS credential chain)")
	bindEnv(pf, "metrics-file", "NESTGUARD_METRICS_FILE")
	bindEnv(pf, "repo", "NESTGUARD_REPO")
	bindEnv(pf, "password-file", "NESTGUARD_PASSWORD_FILE")
	bindEnv(pf, "key-file", "NESTGUARD_KEY_FILE")
	bindEnv(pf, "key-slot", "NESTGUARD_KEY_SLOT")
	bindEnv(pf, "s3-endpoint", endpointEnvs...)
	bindEnv(pf, "endpoint-url", endpointEnvs...)
	bindEnv(pf, "s3-region", "AWS_REGION")
	bindEnv(pf, "s3-path-style", "NESTGUARD_S3_PATH_STYLE")
	bindEnv(pf, "ca-cert", "NESTGUARD_CA_CERT")
	bindEnv(pf, "s3-profile", "NESTGUARD_S3_PROFILE")
	pf.BoolVar(&a.insecureHTTP, "insecure-http", false, "talk plain HTTP to S3 (loopback endpoints only, for tests)")
	pf.StringVar(&a.auditSpool, "audit-spool", a.getenv("NESTGUARD_AUDIT_SPOOL"), "directory of the audit spool of pg archive-wal and pg restore-wal, whose calls are recorded in batches (env NESTGUARD_AUDIT_SPOOL; default $XDG_STATE_HOME/nestguard or ~/.local/state/nestguard; see docs/audit.md)")
	bindEnv(pf, "audit-spool", "NESTGUARD_AUDIT_SPOOL")
	pf.StringVar(&a.cacheDir, "cache-dir", a.getenv("NESTGUARD_CACHE_DIR"), "directory of local caches: the index of a large repository is kept there in a file rather than in memory, and copies of snapshot objects (env NESTGUARD_CACHE_DIR; default $XDG_CACHE_HOME/nestguard or ~/.cache/nestguard; see docs/architecture.md)")
	bindEnv(pf, "cache-dir", "NESTGUARD_CACHE_DIR")
	pf.BoolVar(&a.noCache, "no-cache", a.envBool("NESTGUARD_NO_CACHE"), "keep the index in memory whatever the repository's size, and read snapshots from the storage every time (env NESTGUARD_NO_CACHE)")
	bindEnv(pf, "no-cache", "NESTGUARD_NO_CACHE")
	pf.IntVar(&a.cacheMinBlobs, "index-cache-min-blobs", repository.DefaultIndexCacheMinBlobs, "blobs a repository has (estimated) before its index goes to the cache")
	pf.MarkHidden("index-cache-min-blobs")

	root.AddCommand(
		a.initCommand(),
		monitor(a.backupCommand()),
		monitor(a.restoreCommand()),
		a.snapshotsCommand(),
		a.lsCommand(),
		a.diffCommand(),
		a.statsCommand(),
		monitor(a.verifyCommand()),
		a.repairCommand(),
		monitor(a.pruneCommand()),
		a.keyCommand(),
		a.pgCommand(),
		a.holdCommand(),
		a.retentionCommand(),
		a.forgetCommand(),
		monitor(a.copyCommand()),
		a.auditCommand(),
		a.reportCommand(),
	)
	markAudit(root)
	return root
}

// endpointEnvs are the variables naming the S3 endpoint, first set wins:
// nestguard's own, then the AWS tools' S3-specific and general ones.
var endpointEnvs = []string{"NESTGUARD_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"}

// envBool returns the boolean variable key as a flag reads its value
// (strconv.ParseBool: 1, t, true, TRUE, 0, f, false ...), false when it is
// unset or empty. Another value is kept in envErrs, for the command to
// refuse: read as false, it would also hide the config file's setting,
// which a set variable overrides.
func (a *app) envBool(key string) bool {
	v := a.getenv(key)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		a.envErrs = append(a.envErrs, fmt.Errorf("%s=%q: want true or false (or 1 or 0), or leave it unset", key, v))
	}
	return b
}

// firstEnv returns the value of the first of vars that is set and not empty.
func (a *app) firstEnv(vars ...string) string {
	for _, v := range vars {
		if s := a.getenv(v); s != "" {
			return s
		}
	}
	return ""
}

func (a *app) setupLogging() {
	level := slog.LevelWarn
	switch {
	case a.quiet:
		level = slog.LevelError
	case a.verbose == 1:
		level = slog.LevelInfo
	case a.verbose > 1:
		level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level})
	if a.jsonOut {
		h = slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: level})
	}
	a.log = slog.New(h)
}

func (a *app) locationOptions() location.Options {
	return location.Options{
		S3Endpoint:      a.s3Endpoint,
		S3Region:        a.s3Region,
		S3PathStyle:     a.s3PathStyle,
		CACertFile:      a.caCert,
		InsecureHTTP:    a.insecureHTTP,
		S3Profile:       a.s3Profile,
		S3ProfileOrigin: a.s3ProfileOrigin,
		Logger:          a.log,
		LookupEnv:       a.lookupEnv,
		S3IdleTimeout:   a.s3IdleTimeout,
	}
}

func (a *app) needRepo() error {
	if a.repo == "" {
		return &usageError{errors.New("no repository given: use --repo or set NESTGUARD_REPO")}
	}
	return nil
}

// openRepo opens and unlocks the repository; withIndex also loads the index.
func (a *app) openRepo(ctx context.Context, withIndex bool) (*repository.Repository, error) {
	if err := a.needRepo(); err != nil {
		return nil, err
	}
	r, err := a.openRepository(ctx, a.repo, a.locationOptions(), a.secret, a.keySlot, withIndex)
	if err != nil {
		return nil, err
	}
	if withIndex {
		a.limitMemory(r.Index().MemoryBytes())
		r.OnIndexGrowth(a.limitMemory)
	}
	return r, nil
}

// withRepo opens the repository as openRepo does, runs fn on it, and
// closes it (zeroing its keys) when fn has returned, whatever fn returned.
func (a *app) withRepo(ctx context.Context, withIndex bool, fn func(*repository.Repository) error) error {
	repo, err := a.openRepo(ctx, withIndex)
	if err != nil {
		return err
	}
	defer repo.Close()
	return fn(repo)
}

// openRepository opens the backend of loc, unlocks the repository with
// what secret returns (passphrase or key file, and the slot to try), and
// loads the index when asked; onlySlot, if set, is the one key slot to
// try. The backend is closed again on failure.
func (a *app) openRepository(ctx context.Context, loc string, lo location.Options, secret func() ([]byte, string, error), onlySlot string, withIndex bool) (*repository.Repository, error) {
	be, err := location.Open(ctx, loc, lo)
	if err != nil {
		return nil, err
	}
	r, err := func() (*repository.Repository, error) {
		pw, slot, err := secret()
		if err != nil {
			return nil, err
		}
		defer clear(pw)
		wbe, written := a.watch(be)
		r, err := repository.Open(ctx, wbe, pw, repository.Options{Logger: a.log, KDF: a.kdf, KeySlot: slot, OnlyKeySlot: onlySlot,
			IndexCacheDir: a.indexCacheDir(), IndexCacheMinBlobs: a.cacheMinBlobs})
		if err != nil {
			return nil, err
		}
		if err := a.audited(r, be, written, loc); err != nil {
			r.Close()
			return nil, err
		}
		if withIndex {
			if err := r.LoadIndex(ctx); err != nil {
				r.Close()
				return nil, err
			}
		}
		return r, nil
	}()
	if err != nil {
		a.release(be)
		return nil, err
	}
	return r, nil
}

// findSnapshots resolves each reference (an id prefix or "latest") among
// the repository's snapshots, in the order given.
func findSnapshots(ctx context.Context, repo *repository.Repository, refs ...string) ([]*snapshot.Snapshot, error) {
	list, unreadable, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, err
	}
	out := make([]*snapshot.Snapshot, len(refs))
	for i, ref := range refs {
		if out[i], err = snapshot.Find(list, unreadable, ref, snapshot.Filter{}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pipelineMemory is what a backup or restore may use besides the index. A
// file backup keeps 15-35 MiB live with the defaults (chunk buffers, the
// chunker's windows; packs stream to their file), and the runtime needs
// some beside the heap; a pure-Go build adds its zstd history
// (compress.HeapReserve). Measured on the bench/compare data sets with
// libzstd: at 56 MiB the collector runs 63 times on 100,000 small files
// and under 1% of the time on pgdata, and the peak RSS of a backup was the
// 78 MiB that unlocking with Argon2id over 64 MiB needed (72 MiB made it
// 84-90 MiB on pgdata, for nothing). Pure Go, at 64 MiB (56 + 8) the collector ran
// without end on the small files (CPU +65%), at 72 not at all.
const pipelineMemory = 56<<20 + compress.HeapReserve

// indexCacheDir is the directory of local caches: --cache-dir, else
// $XDG_CACHE_HOME/nestguard or ~/.cache/nestguard; "" (no cache) with
// --no-cache or when there is no home.
func (a *app) indexCacheDir() string {
	switch {
	case a.noCache:
		return ""
	case a.cacheDir != "":
		return a.cacheDir
	}
	if d := a.getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "nestguard")
	}
	if home := a.getenv("HOME"); home != "" {
		return filepath.Join(home, ".cache", "nestguard")
	}
	return ""
}

// limitMemory sets a soft memory limit of the pipeline's budget plus twice
// the index, unless the user set GOMEMLIMIT. Without it the heap doubles
// its live size before each collection, and a backup's RSS is about three
// times what it uses; the limit makes the collector work before that. It
// grows with the index so that a large repository does not collect
// without end: when the repository is opened, and again each time a
// backup's new blobs have grown the index (Repository.OnIndexGrowth).
// Set only at the start, a first backup of 1,000,000 tiny files ran with
// 56 MiB against up to 100 MB live, collected 40,000 times and used 2.8
// times the CPU it needs.
func (a *app) limitMemory(indexBytes int) {
	if _, set := a.lookupEnv("GOMEMLIMIT"); set || a.setMemoryLimit == nil {
		return
	}
	a.setMemoryLimit(int64(pipelineMemory + 2*indexBytes))
}

// secret returns what opens the repository: the key file's secret and slot
// when --key-file is given, else the passphrase.
func (a *app) secret() ([]byte, string, error) {
	if !a.keyFileFirst("key-file", a.keyFile, "password-file", a.passwordFile, "NESTGUARD_PASSWORD") {
		pw, err := a.passphrase(false)
		return pw, "", err
	}
	return a.readKeyFile(a.keyFile)
}

// readKeyFile returns a key file's secret and the slot it opens.
func (a *app) readKeyFile(path string) ([]byte, string, error) {
	b, err := secretfile.Read(path, "key file", a.warn)
	if err != nil {
		return nil, "", err
	}
	slot, secret, err := repository.ParseKeyFile(b)
	clear(b)
	if err != nil {
		return nil, "", fmt.Errorf("key file %s: %w", path, err)
	}
	return secret, slot, nil
}

// warn prints a warning on stderr, as the log does (not with --quiet).
func (a *app) warn(msg string) {
	if a.log == nil {
		a.setupLogging()
	}
	a.log.Warn(msg)
}

// passphrase reads the passphrase from the environment, a file, or a
// terminal prompt (twice when confirm is set).
func (a *app) passphrase(confirm bool) ([]byte, error) {
	return a.readPassphrase(passphraseSource{file: a.passwordFile, flag: "--password-file", env: "NESTGUARD_PASSWORD",
		fileFromConfig: a.originOf("password-file", a.passwordFile) == fromConfigFile}, "Repository passphrase: ", confirm)
}

// errNoPassphrase is the error (wrapped) of a command that needs a
// passphrase and has none and no terminal to ask on.
var errNoPassphrase = errors.New("no passphrase")

// passphraseSource says where a passphrase may come from: the file (given
// with flag), else the environment variable env, else a terminal; a file
// named by the config file (fileFromConfig) gives way to env, as every
// setting of the config file gives way to the environment.
type passphraseSource struct {
	file, flag, env string
	fileFromConfig  bool
}

func (a *app) readPassphrase(src passphraseSource, prompt string, confirm bool) ([]byte, error) {
	if src.file != "" && !(src.fileFromConfig && a.getenv(src.env) != "") {
		b, err := secretfile.Read(src.file, "passphrase file", a.warn)
		if err != nil {
			return nil, err
		}
		defer clear(b)
		// Only the line ending is trimmed: spaces may belong to the passphrase.
		line, _, _ := bytes.Cut(b, []byte("\n"))
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return nil, fmt.Errorf("passphrase file %s is empty", src.file)
		}
		return bytes.Clone(line), nil
	}
	if p, ok := a.lookupEnv(src.env); ok && p != "" {
		return []byte(p), nil
	}
	fd, tty := a.stdinTerminal()
	if !tty {
		return nil, fmt.Errorf("%w: set %s or use %s (no terminal to ask on)", errNoPassphrase, src.env, src.flag)
	}
	read := func(p string) ([]byte, error) {
		fmt.Fprint(a.stderr, p)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(a.stderr)
		return b, err
	}
	p1, err := read(prompt)
	if err != nil {
		return nil, err
	}
	if len(p1) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if confirm {
		p2, err := read("Repeat the passphrase: ")
		same := bytes.Equal(p1, p2)
		clear(p2)
		if err != nil {
			clear(p1)
			return nil, err
		}
		if !same {
			clear(p1)
			return nil, errors.New("the passphrases do not match")
		}
	}
	return p1, nil
}

// printJSON writes v as indented JSON to stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printf prints human output unless --quiet or --json.
func (a *app) printf(format string, args ...any) {
	if a.quiet || a.jsonOut {
		return
	}
	fmt.Fprintf(a.stdout, format, args...)
}

func (a *app) progressEnabled() bool { return !a.noProgress && !a.quiet && !a.jsonOut }

func fmtTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }
