package prune

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// Options configure a prune. The zero value prunes with the defaults:
// DefaultMaxUnused, no repack limit, DefaultGrace.
type Options struct {
	// MaxUnused is how much unused data may stay in partly used packs
	// rather than be repacked; nil means DefaultMaxUnused.
	MaxUnused *Unused
	// MaxRepack bounds the bytes of the packs repacked in one run; 0 is
	// no bound.
	MaxRepack int64
	// Grace is how long a pack stays a deletion candidate before a prune
	// may delete it; nil means DefaultGrace. Zero deletes what this run
	// marks in the same run: safe only when no backup runs meanwhile.
	Grace *time.Duration
	// DryRun computes and reports everything and writes and deletes
	// nothing.
	DryRun bool
	// Without are snapshots a dry run prunes as if they were removed
	// already: what a forget would leave ('forget --dry-run --prune').
	// Only for a dry run: Run refuses it otherwise.
	Without map[id.ID]bool

	// WAL is the PostgreSQL WAL expiry (issue 19's "pg expiry"): given
	// every snapshot the repository keeps (listed after the packs were
	// pruned), it returns the names of the wal/ objects (as stored, e.g.
	// "000000010000000000000003") that no kept base backup and no
	// recovery window needs. Prune removes each one the store allows to
	// (Object Lock, legal holds: the others are reported in
	// Report.Retained) and reports them in Report.WALRemoved. Nil removes
	// no WAL. It is called in a dry run too, and nothing is removed then.
	// bounds are where the expiry stops, per database system
	// (walexpiry.Plan.Boundaries): before removing anything, prune records
	// those that move a system's boundary on (walexpiry.Save), so that
	// verify tells the WAL removed from WAL lost.
	WAL func(ctx context.Context, kept []*snapshot.Snapshot) (remove []string, bounds []walexpiry.Boundary, err error)

	// Host and User name who ran the prune in the candidate record it
	// writes; empty: this host and user.
	Host, User string
	// Logger receives progress and warnings; nil discards them.
	Logger *slog.Logger
	// Progress, if set, is told what the prune is doing as it goes (for a
	// status line): the step and how far it is.
	Progress func(Progress)
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// At is a test hook called at named points (the Point constants), so
	// that tests can kill the process there.
	At func(point string)
}

// Points where Options.At is called.
const (
	PointRepacked       = "repacked"        // repacked blobs stored and indexed, no record yet
	PointMarked         = "marked"          // the candidate record is written
	PointIndexReplaced  = "index-replaced"  // the first index object was replaced
	PointIndexRewritten = "index-rewritten" // every index object replaced, no pack deleted
	PointPacksDeleting  = "packs-deleting"  // about half the packs deleted
	PointPacksDeleted   = "packs-deleted"   // packs deleted, records not yet removed
)

// Progress is what a running prune reports.
type Progress struct {
	Step        string // "snapshots", "repack", "delete", ...
	Done, Total int64
	Bytes       int64
}

// DefaultGrace is how long a marked pack waits before a prune deletes it.
const DefaultGrace = 24 * time.Hour

// DefaultMaxUnused is the unused share of the repository a prune leaves in
// partly used packs: 5%, as restic's --max-unused.
var DefaultMaxUnused = Unused{Percent: 5}

// Unused is a --max-unused limit: a percentage of the repository's size,
// a number of bytes, or unlimited (repack nothing).
type Unused struct {
	Percent   float64 // used when Bytes is 0 and not Unlimited
	Bytes     int64
	Unlimited bool
}

// ParseUnused parses "5%", "100M", "2GiB", "5B", "0" or "unlimited". A
// number other than 0 without a unit is refused as ambiguous.
func ParseUnused(s string) (Unused, error) {
	s = strings.TrimSpace(s)
	if s == "unlimited" {
		return Unused{Unlimited: true}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f < 0 || f > 100 || math.IsNaN(f) {
			return Unused{}, fmt.Errorf("--max-unused %q: want a percentage from 0%% to 100%%, a size (500M, 2G) or 'unlimited'", s)
		}
		if f == 100 {
			return Unused{Unlimited: true}, nil
		}
		return Unused{Percent: f}, nil
	}
	n, err := ParseSize(s)
	if err != nil {
		return Unused{}, fmt.Errorf("--max-unused %q: want a percentage (5%%), a size (500M, 2G) or 'unlimited'", s)
	}
	if n == 0 {
		return Unused{Percent: 0}, nil
	}
	if strings.TrimLeft(s, "0123456789") == "" {
		// restic reads a number alone as bytes; "--max-unused 5" is
		// most often meant as 5%, and as 5 bytes it repacks nearly
		// every partly used pack.
		return Unused{}, fmt.Errorf("--max-unused %s: a number without a unit is ambiguous: write %s%% for a share of the repository, or %sB (bytes), %sM, %sG for a size", s, s, s, s, s)
	}
	return Unused{Bytes: n}, nil
}

func (u Unused) String() string {
	switch {
	case u.Unlimited:
		return "unlimited"
	case u.Bytes > 0:
		return strconv.FormatInt(u.Bytes, 10) + " bytes"
	}
	return strconv.FormatFloat(u.Percent, 'f', -1, 64) + "%"
}

// limit returns the unused bytes allowed to stay beside used bytes of
// live data: restic's rule, so that unused/(used+unused) stays below the
// percentage.
func (u Unused) limit(used int64) int64 {
	switch {
	case u.Unlimited:
		return math.MaxInt64
	case u.Bytes > 0:
		return u.Bytes
	}
	return int64(u.Percent / (100 - u.Percent) * float64(used))
}

// ParseSize parses a byte count with an optional unit: K, M, G, T (powers
// of 1024, also written KiB, MiB, GiB, TiB, or with a B), e.g. "10GiB".
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToUpper(strings.TrimSpace(s[len(num):]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (K, M, G, T)", s)
	}
	shift := 0
	switch strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I") {
	case "":
	case "K":
		shift = 10
	case "M":
		shift = 20
	case "G":
		shift = 30
	case "T":
		shift = 40
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q (want K, M, G or T)", s, unit)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n << shift, nil
}

// GraceOrDefault is the grace period the prune uses: Grace, or
// DefaultGrace when it is nil.
func (o *Options) GraceOrDefault() time.Duration { return o.grace() }

func (o *Options) grace() time.Duration {
	if o.Grace == nil {
		return DefaultGrace
	}
	return max(*o.Grace, 0)
}

func (o *Options) maxUnused() Unused {
	if o.MaxUnused == nil {
		return DefaultMaxUnused
	}
	return *o.MaxUnused
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Options) at(point string) {
	if o.At != nil {
		o.At(point)
	}
}

func (o *Options) progress(p Progress) {
	if o.Progress != nil {
		o.Progress(p)
	}
}

// who names who runs the prune, in its candidate and lock records: Host
// and User, or this host and user.
func (o *Options) who() (host, username string) {
	host, username = o.Host, o.User
	if host == "" {
		host, _ = os.Hostname()
	}
	if username == "" {
		if u, err := user.Current(); err == nil {
			username = u.Username
		}
	}
	return host, username
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}
