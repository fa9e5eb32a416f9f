package main

import (
	"context"
	"crypto/fips140"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/backend/location"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/repository"
)

func (a *app) initCommand() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new repository",
		Long: `Create a new, empty repository at --repo and protect it with a passphrase.

A random 256-bit master key encrypts everything; the passphrase only wraps
that key (Argon2id), so it can be changed or supplemented with 'nestguard key'.
Keep the passphrase safe: without it the backups cannot be read by anyone.

With --object-lock (S3 buckets created with Object Lock enabled only),
every object nestguard writes is retained for at least --min-retention
(units y, d, h, m, s; a year counts 365.25 days rounded up to whole days,
so 7y is 2557 days), and each backup extends the retention of the older
objects its snapshot shares to the snapshot's time plus the minimum. In
compliance mode nobody, not even the bucket owner, can delete or shorten
it; governance mode can be bypassed by specially privileged users (on
MinIO, by anyone allowed to extend retention: use compliance there). A
bucket's default retention that is longer (or in compliance mode) wins
over the flags, and init says so: each object's own retention would
otherwise replace the bucket's default with a weaker one.

--id-hash picks the hash family that names every chunk (keyed) and
every stored object (plain, so anyone can check a name without the key),
fixed for the repository's life. blake3, the default, hashes two to
three times as fast as SHA-256, which shows in first backups, restores
and WAL archiving; b3sum checks its object names. hmac-sha256 names
chunks with HMAC-SHA-256 and objects with SHA-256 (sha256sum checks
them): only FIPS 140-3 approved primitives. It is what --fips uses, and
what a repository that must be readable by a FIPS policy later should
choose.

--fips creates a repository whose every primitive is FIPS 140-3 approved
in Go's cryptographic module: AES-256-GCM under per-object keys derived
with HKDF-SHA-256 (instead of XAES-256-GCM), PBKDF2-HMAC-SHA-256 for
passphrases (instead of Argon2id; passphrases of at least 14 bytes), key
files with HKDF-SHA-256, HMAC-SHA-256 chunk IDs and SHA-256 object
names (--id-hash blake3 is refused). Such a repository can be used by a nestguard running with
GODEBUG=fips140=only, which refuses every other repository, and init
refuses to make one without --fips there. The choice is fixed for the
repository's life. What the FIPS mode covers and what it does not:
docs/security.md, "FIPS 140-3".

On S3, init writes the config and the first key slot: it needs the key
administrator role's permissions (docs/storage.md, "S3 roles"), and
backups afterwards only the backup writer's.`,
		Example: `  NESTGUARD_PASSWORD_FILE=/etc/nestguard/pass nestguard init --repo /srv/backup
  nestguard init --repo /srv/backup --id-hash hmac-sha256
  GODEBUG=fips140=only nestguard init --repo /srv/backup --fips
  nestguard init --repo s3://backups/prod --object-lock compliance --min-retention 7y`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runInit(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.chunkMin, "chunk-min", 512, "minimum chunk size in KiB")
	f.IntVar(&o.chunkAvg, "chunk-avg", 1024, "average chunk size in KiB (a power of two)")
	f.IntVar(&o.chunkMax, "chunk-max", 8192, "maximum chunk size in KiB")
	f.StringVar(&o.compression, "compression", "default", "zstd level: off, fastest (matches only, no entropy coding), default (zstd 3's tables, fast strategy above 128 KiB), better, best")
	f.StringVar(&o.idHash, "id-hash", "", "hashes naming chunks and objects: blake3 (the default, faster) or hmac-sha256 (SHA-256 family, FIPS 140-3 approved; the default with --fips)")
	f.BoolVar(&o.fips, "fips", false, "use FIPS 140-3 approved primitives only (AES-256-GCM-HKDF-SHA-256, PBKDF2-HMAC-SHA-256, HMAC-SHA-256); needed to run under GODEBUG=fips140=only")
	f.StringVar(&o.objectLock, "object-lock", "", "retain every object (S3 Object Lock): compliance or governance")
	f.StringVar(&o.minRetention, "min-retention", "", "with --object-lock: minimum retention, e.g. 7y, 90d, 12h")
	return cmd
}

// initOptions are what init is asked to do: its flags.
type initOptions struct {
	chunkMin, chunkAvg, chunkMax int // KiB
	compression, idHash          string
	objectLock, minRetention     string
	fips                         bool
}

// runInit creates a new repository at --repo.
func (a *app) runInit(ctx context.Context, o initOptions) error {
	if err := a.needRepo(); err != nil {
		return err
	}
	blobID, err := blobIDAlgorithm(o.idHash)
	if err != nil {
		return err
	}
	if o.fips && blobID == crypto.BlobIDBLAKE3 {
		return &usageError{fmt.Errorf("--id-hash %s with --fips: BLAKE3 is not FIPS 140-3 approved; a FIPS repository names chunks with hmac-sha256", o.idHash)}
	}
	if !o.fips && fips140.Enforced() {
		return &usageError{errors.New("this process runs with GODEBUG=fips140=only, where only a FIPS repository can be used: add --fips")}
	}
	var lock *repository.ObjectLock
	if o.objectLock != "" || o.minRetention != "" {
		if o.objectLock == "" {
			return &usageError{errors.New("--min-retention needs --object-lock compliance or governance")}
		}
		if lock, err = repository.NewObjectLock(o.objectLock, o.minRetention); err != nil {
			return &usageError{err}
		}
	}
	be, err := location.Create(ctx, a.repo, a.locationOptions())
	if err != nil {
		return err
	}
	defer a.release(be)
	pw, err := a.passphrase(true)
	if err != nil {
		return err
	}
	wbe, written := a.watch(be)
	r, err := repository.Init(ctx, wbe, pw, repository.InitOptions{
		Options:     repository.Options{Logger: a.log, KDF: a.kdf},
		Chunker:     repository.ChunkerSizes{Min: o.chunkMin << 10, Avg: o.chunkAvg << 10, Max: o.chunkMax << 10},
		Compression: o.compression,
		BlobID:      blobID,
		FIPS:        o.fips,
		ObjectLock:  lock,
	})
	clear(pw)
	if err != nil {
		return err
	}
	defer r.Close() // zeroes the new master key; closes be again, harmlessly
	if err := a.audited(r, be, written, a.repo); err != nil {
		return err
	}
	cfg := r.Config()
	if a.jsonOut {
		return a.printJSON(initJSON{current(), a.repo, cfg.ID, cfg})
	}
	a.printf("created repository %s at %s\n", cfg.ID[:8], a.repo)
	if eff := cfg.ObjectLock; eff != nil {
		if eff.Strengthened(lock) {
			// Stderr as well: with --quiet or --json this must still be seen.
			fmt.Fprintf(a.stderr, "note: bucket %s has a default retention stricter than --object-lock %s --min-retention %s: using %s mode and %s, since each object's own retention would replace the bucket's default\n",
				a.repo, lock.Mode, repository.FormatRetention(lock.MinRetention), eff.Mode, repository.FormatRetention(eff.MinRetention))
		}
		a.printf("object lock: %s mode, every object retained for at least %s\n", eff.Mode, repository.FormatRetention(eff.MinRetention))
	}
	a.printf("keep the passphrase safe: without it nobody can read these backups\n")
	return nil
}

// blobIDAlgorithm maps an --id-hash value to the name configs record;
// "" (no flag) to "", the repository's default.
func blobIDAlgorithm(flag string) (string, error) {
	switch flag {
	case "":
		return "", nil
	case "hmac-sha256":
		return crypto.BlobIDHMACSHA256, nil
	case "blake3":
		return crypto.BlobIDBLAKE3, nil
	}
	return "", &usageError{fmt.Errorf("unknown --id-hash %q: want hmac-sha256 or blake3", flag)}
}
