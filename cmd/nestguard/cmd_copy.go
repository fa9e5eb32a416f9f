package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/copier"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// copyFlags are the options of 'nestguard copy'.
type copyFlags struct {
	from, to         string
	fromPasswordFile string
	fromKeyFile      string
	fromS3Endpoint   string
	fromS3Region     string
	fromS3Profile    string
	fromS3ProfileOf  string // where fromS3Profile was given, for messages
	all              bool
	newerThanLast    bool
	continuous       bool
	interval         time.Duration
	workers          int
	repoSet          bool // --repo given on the command line
}

func (a *app) copyCommand() *cobra.Command {
	var f copyFlags
	cmd := &cobra.Command{
		Use:   "copy --from-repo REPO --to-repo REPO [SNAPSHOT...|--all]",
		Short: "Copy snapshots to another repository (a second region)",
		Long: `Copy snapshots, with their PostgreSQL WAL, from the repository --from-repo
to the repository --to-repo (the same as --repo). Only data the destination
lacks is stored; everything is re-encrypted under the destination's keys, and the
destination's own deduplication ids are computed, so the source's keys
never reach the destination.

The source is opened with --from-password-file, NESTGUARD_FROM_PASSWORD
or --from-key-file; the destination as usual (--password-file,
NESTGUARD_PASSWORD or --key-file). Snapshots copied before are skipped, so running the
same copy again transfers nothing; so is a snapshot that is itself a copy
of one the destination holds (copies both ways) or of one it holds a copy
of (three repositories), and an interrupted copy resumes where it stopped.
Copies into one destination may run at once: each re-checks the
destination just before and after saving a copy, so that a snapshot copied
by the other is reported already there. A base backup whose WAL span is
incomplete in the source is refused, naming the missing segment. A
snapshot whose data cannot be read from the source (a pack lost or
damaged) is not copied and is named, the others are copied, and the copy
exits 1. A source or destination that does not answer (an S3 store down,
or throttling until the retries give up) is not damage: the copy stops
there and exits 1, saying so; what was copied stays. With --continuous the copy repeats every --interval until
interrupted, keeping the destination within that interval of the source
(a round that could not copy some snapshots logs them and copies the rest);
stopped by SIGTERM (or SIGINT) it exits 143 (130), as every command does
(systemd: SuccessExitStatus=143).

A snapshot the destination forgot is not a snapshot copied before: copy
--all copies it again (as restic's copy does), so a destination that keeps
less than the source grows back at every copy. With --newer-than-last, only
source snapshots not older than the newest copy of the same host, kind and
paths are copied (all of them while the destination holds no such copy):
what the destination forgot stays forgotten, and an older snapshot the
source got later (a backup with --time in the past, a host whose clock was
behind) is not copied either; those are counted as older than the last
copy. Give it to a --continuous copy into a destination with its own
retention.

An S3 source signs with the credentials of --from-s3-profile, a profile
of the shared AWS files used alone (its keys, credential_process or a
role it assumes; AWS_ACCESS_KEY_ID and AWS_PROFILE are not read for
it), else of --s3-profile, else the destination's credential chain: give
it for a source in another account or store with its own keys. Its
identity needs only read and list rights (docs/storage.md, "copy source"
role). Errors name the side (source or destination) and the profile
used.

When the destination has an Object Lock policy, each copy gets its
retention as a backup would; if that fails, the copy is kept and
'nestguard retention apply' finishes it (a copy run again skips it).`,
		Example: `  nestguard copy --from-repo s3://backups-eu/prod --to-repo s3://backups-us/prod --all
  nestguard copy --from-repo /srv/backup --to-repo s3://offsite/host1 latest
  nestguard copy --from-repo s3://a/p --to-repo s3://b/p --all --continuous --interval 5m
  nestguard copy --from-repo s3://a/p --to-repo s3://b/p --all --newer-than-last --continuous
  # each side its own account or store, its credentials from ~/.aws profiles:
  nestguard copy --from-repo s3://backups-eu/prod --from-s3-profile eu-copy-source \
      --to-repo s3://dr-us/prod --s3-profile us-backup-writer --all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.repoSet = cmd.Flag("repo").Changed
			f.fromS3ProfileOf = a.flagOrigin(cmd.Flag("from-s3-profile"))
			return a.runCopy(cmd.Context(), f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from-repo", a.getenv("NESTGUARD_FROM_REPO"), "source repository (env NESTGUARD_FROM_REPO)")
	fl.StringVar(&f.to, "to-repo", "", "destination repository (default --repo)")
	fl.StringVar(&f.fromPasswordFile, "from-password-file", a.getenv("NESTGUARD_FROM_PASSWORD_FILE"), "read the source passphrase from this file (env NESTGUARD_FROM_PASSWORD_FILE)")
	fl.StringVar(&f.fromKeyFile, "from-key-file", a.getenv("NESTGUARD_FROM_KEY_FILE"), "open the source with a generated key file instead of a passphrase (env NESTGUARD_FROM_KEY_FILE)")
	bindEnv(fl, "from-repo", "NESTGUARD_FROM_REPO")
	bindEnv(fl, "from-password-file", "NESTGUARD_FROM_PASSWORD_FILE")
	bindEnv(fl, "from-key-file", "NESTGUARD_FROM_KEY_FILE")
	fl.StringVar(&f.fromS3Endpoint, "from-s3-endpoint", "", "S3 endpoint of the source (default --s3-endpoint)")
	fl.StringVar(&f.fromS3Region, "from-s3-region", "", "S3 region of the source (default --s3-region)")
	fl.StringVar(&f.fromS3Profile, "from-s3-profile", a.getenv("NESTGUARD_FROM_S3_PROFILE"), "take the source's S3 credentials from this profile of the shared AWS files only, as --s3-profile does the destination's (env NESTGUARD_FROM_S3_PROFILE; default --s3-profile, else the AWS credential chain)")
	bindEnv(fl, "from-s3-profile", "NESTGUARD_FROM_S3_PROFILE")
	fl.BoolVar(&f.all, "all", false, "copy every snapshot")
	fl.BoolVar(&f.newerThanLast, "newer-than-last", false, "copy only snapshots not older than the newest copy of the same host, kind and paths: what the destination forgot stays forgotten")
	fl.BoolVar(&f.continuous, "continuous", false, "repeat the copy every --interval until interrupted")
	fl.DurationVar(&f.interval, "interval", 5*time.Minute, "with --continuous: time between copies")
	fl.IntVar(&f.workers, "workers", 0, "source packs read at once (default 4, 8 from S3)")
	flagAliases(cmd, map[string]string{"from": "from-repo", "to": "to-repo"})
	return cmd
}

func (a *app) runCopy(ctx context.Context, f copyFlags, refs []string) error {
	if f.from == "" {
		return &usageError{errors.New("no source: give --from-repo REPO")}
	}
	if f.to != "" {
		if f.repoSet && a.repo != f.to {
			return &usageError{errors.New("--to-repo and --repo name different repositories: give one")}
		}
		a.repo = f.to
	}
	if err := a.needRepo(); err != nil {
		return err
	}
	if f.all == (len(refs) > 0) {
		return &usageError{errors.New("name the snapshots to copy, or give --all (not both)")}
	}
	if f.continuous && f.interval <= 0 {
		return &usageError{errors.New("--interval must be positive")}
	}
	s, err := a.openCopy(ctx, f)
	if err != nil {
		return err
	}
	defer func() { s.close() }()
	// Copies whose retention failed in a round of a continuous copy: the
	// next round skips them as copied, so it retries their retention.
	pending := make(map[id.ID]*snapshot.Snapshot)
	for {
		res, err := s.run(ctx, a, refs, f.all, pending)
		// A continuous copy reports only the rounds that copied something.
		if res != nil && (!f.continuous || len(res.Copied) > 0 || res.WAL > 0) {
			a.printCopyResult(res, f.continuous)
		}
		if !f.continuous {
			return err
		}
		var partial *copier.PartialError
		switch {
		case err == nil:
		case ctx.Err() != nil:
			// Stopped by a signal: 130 or 143, as documented, also
			// right after a failed round (found by a hostile test:
			// exit 0, so a copy loop whose last round failed looked
			// like a success).
			return context.Cause(ctx)
		case errors.As(err, &partial):
			// Every snapshot it could copy was copied: the session
			// goes on, and the next round tries the others again.
			a.log.Error("copy incomplete; trying again at the next interval", "err", err)
		default:
			// A failed round may leave the destination's writer failed
			// and the copier's maps naming blobs never stored: start over.
			a.log.Error("copy failed; retrying at the next interval", "err", err)
			s.close()
			s = nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(f.interval):
		}
		if s == nil {
			if s, err = a.openCopy(ctx, f); err != nil {
				a.log.Error("reopening the repositories; retrying at the next interval", "err", err)
			}
			continue
		}
		// New snapshots and the packs of new backups on either side.
		if err := s.src.LoadIndex(ctx); err != nil {
			a.log.Error("reloading the source index", "err", err)
		}
		if err := s.dst.LoadIndex(ctx); err != nil {
			a.log.Error("reloading the destination index", "err", err)
		}
	}
}

// copySession is an open source and destination and the copier between
// them; it lives as long as a continuous copy runs without error.
type copySession struct {
	src, dst *repository.Repository
	c        *copier.Copier
}

func (a *app) openCopy(ctx context.Context, f copyFlags) (*copySession, error) {
	src, err := a.openSource(ctx, f)
	if err != nil {
		return nil, err
	}
	dst, err := a.openRepo(ctx, true)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("destination %s: %w", a.repo, err)
	}
	workers := f.workers
	if workers <= 0 {
		_, workers = backend.ConcurrencyOf(src.Backend())
	}
	c, err := copier.New(src, dst, copier.Options{Workers: workers, Log: a.log, Commit: a.commitOptions(), NewerThanLast: f.newerThanLast})
	if err != nil {
		src.Close()
		dst.Close()
		return nil, err
	}
	return &copySession{src: src, dst: dst, c: c}, nil
}

// close closes both repositories; a nil session (a failed reopen) is fine.
func (s *copySession) close() {
	if s != nil {
		s.src.Close()
		s.dst.Close()
	}
}

// run copies once, with progress; the commit step applies the
// destination's retention to each copy when it has an Object Lock policy.
// A nil session (a failed reopen) copies nothing.
func (s *copySession) run(ctx context.Context, a *app, refs []string, all bool, pending map[id.ID]*snapshot.Snapshot) (*copier.Result, error) {
	if s == nil {
		return nil, errors.New("the repositories are not open")
	}
	if err := s.retryRetention(ctx, a, pending); err != nil {
		return nil, err
	}
	rep := progress.Start(a.stderr, a.progressEnabled(), func() progress.Status {
		return progress.Status{Files: s.c.P.Snapshots.Load(), Bytes: s.c.P.BytesRead.Load(),
			Extra: fmt.Sprintf("snapshots, %s stored", progress.Bytes(s.dst.Stats.StoredBytes.Load()))}
	})
	defer rep.Stop()
	res, err := s.c.Run(ctx, refs, all, nil)
	if re := (*commit.RetentionError)(nil); errors.As(err, &re) {
		pending[re.Snapshot.ID] = re.Snapshot
	}
	return res, err
}

// retryRetention applies the retention of the copies in pending, whose
// retention failed in an earlier round, and forgets those it finished.
func (s *copySession) retryRetention(ctx context.Context, a *app, pending map[id.ID]*snapshot.Snapshot) error {
	for sid, sn := range pending {
		if err := commit.Retain(ctx, s.dst, sn, a.commitOptions()); err != nil {
			return err
		}
		delete(pending, sid)
	}
	return nil
}

// openSource opens and unlocks the --from-repo repository and loads its index.
func (a *app) openSource(ctx context.Context, f copyFlags) (*repository.Repository, error) {
	lo := a.locationOptions()
	if f.fromS3Endpoint != "" {
		lo.S3Endpoint = f.fromS3Endpoint
	}
	if f.fromS3Region != "" {
		lo.S3Region = f.fromS3Region
	}
	if f.fromS3Profile != "" {
		lo.S3Profile, lo.S3ProfileOrigin = f.fromS3Profile, f.fromS3ProfileOf
	}
	r, err := a.openRepository(ctx, f.from, lo, func() ([]byte, string, error) { return a.fromSecret(f) }, "", true)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", f.from, err)
	}
	return r, nil
}

// fromSecret reads what opens the source: its key file, else its passphrase.
func (a *app) fromSecret(f copyFlags) ([]byte, string, error) {
	if !a.keyFileFirst("from-key-file", f.fromKeyFile, "from-password-file", f.fromPasswordFile, "NESTGUARD_FROM_PASSWORD") {
		if _, tty := a.stdinTerminal(); f.fromPasswordFile == "" && a.getenv("NESTGUARD_FROM_PASSWORD") == "" && !tty {
			return nil, "", errors.New("no passphrase: set NESTGUARD_FROM_PASSWORD, or use --from-password-file or --from-key-file (no terminal to ask on)")
		}
		pw, err := a.readPassphrase(passphraseSource{file: f.fromPasswordFile, flag: "--from-password-file", env: "NESTGUARD_FROM_PASSWORD",
			fileFromConfig: a.originOf("from-password-file", f.fromPasswordFile) == fromConfigFile}, "Source repository passphrase: ", false)
		return pw, "", err
	}
	return a.readKeyFile(f.fromKeyFile)
}

// printCopyResult prints what a copy (a round of a continuous one) did.
func (a *app) printCopyResult(res *copier.Result, continuous bool) {
	showSkipped := !continuous
	secs := res.Elapsed.Seconds()
	rate := 0.0 // MiB/s, as every size nestguard prints is in IEC units
	if secs > 0 {
		rate = float64(res.BytesRead) / secs / (1 << 20)
	}
	if a.jsonOut {
		doc := copyJSON{current(), res.Copied, res.Skipped, res.Failed, res.Older, res.WAL, res.AuditEntries, res.BlobsRead, res.BytesRead, res.BlobsNew, res.BytesStored,
			res.Unreadable, res.UnreadableExpiry, secs, rate, rate * (1 << 20) / 1e6}
		if continuous {
			// A document per round: JSON lines, which a reader can
			// take one line at a time (docs/json.md).
			json.NewEncoder(a.stdout).Encode(doc)
			return
		}
		a.printJSON(doc)
		return
	}
	for _, s := range res.Skipped {
		if !showSkipped {
			break
		}
		a.printf("snapshot %s already copied as %s\n", s.Source[:8], s.Destination[:8])
	}
	for _, c := range res.Copied {
		a.printf("snapshot %s copied as %s (%d new blobs, %s stored)\n", c.Source[:8], c.Destination[:8], c.BlobsNew, progress.Bytes(c.BytesStored))
	}
	for _, f := range res.Failed {
		a.printf("snapshot %s of %s NOT copied: %s\n", f.Source[:8], f.Time.Local().Format(time.DateTime), f.Error)
	}
	if res.WAL > 0 {
		a.printf("%d WAL objects copied\n", res.WAL)
	}
	if len(res.Failed) > 0 {
		a.printf("%d NOT copied (damaged in the source), ", len(res.Failed))
	}
	if len(res.Older) > 0 {
		a.printf("%d older than the last copy (--newer-than-last), ", len(res.Older))
	}
	a.printf("%d copied, %d already there; read %s from the source (%.1f MiB/s), stored %s new in %s\n",
		len(res.Copied), len(res.Skipped), progress.Bytes(res.BytesRead), rate, progress.Bytes(res.BytesStored),
		res.Elapsed.Round(time.Millisecond))
}
