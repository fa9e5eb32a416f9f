package prune

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository"
)

// ErrLocked says another prune runs on the repository: two prunes at once
// could each delete the one copy of a blob the other keeps (docs/format.md,
// "Prune"), so the second one refuses to start.
var ErrLocked = errors.New("another prune is running")

// A prune announces itself with a lock record, a sealed write-once object
// in backend.LockFile, and refuses to run while another prune's record is
// live. Writers (backups, copies) never look at them: they run beside a
// prune by design. A record is never rewritten: a running prune writes a
// new one every lockRefresh and removes the one before (which Object Lock
// may keep: it then only expires).
const (
	// lockLease is how long a record stays live after it was written,
	// unless its prune removes it first.
	lockLease = 30 * time.Minute
	// lockRefresh is how often a running prune writes a new record.
	lockRefresh = 10 * time.Minute
	// lockSkew is how far the clocks of two prunes may differ: the
	// bound of writers and prunes alike (commit.Skew).
	lockSkew = commit.Skew
	// maxLockRecord bounds the size of a lock record (a sealed record
	// is a few hundred bytes): a larger object under locks/ is no
	// prune's, and is not read (one larger than any object would
	// otherwise fail every prune's reading).
	maxLockRecord = 64 << 10
)

// lockRecord is a lock record: which prune runs, where, and until when it
// counts as running.
type lockRecord struct {
	ID id.ID `json:"-"`
	// Op is what holds the lock: "prune".
	Op string `json:"op"`
	// Time is when the record was written, by its prune's clock; Expires
	// is Time plus the lease. Started is when its prune wrote its first.
	Time    time.Time `json:"time"`
	Expires time.Time `json:"expires"`
	Started time.Time `json:"started"`
	Host    string    `json:"host,omitempty"`
	User    string    `json:"user,omitempty"`
	PID     int       `json:"pid,omitempty"`
	// Proc names the process ID space PID is of: the boot and the PID
	// namespace (Linux); empty where unknown. Only a record of the same
	// host and Proc can be found dead by its PID.
	Proc string `json:"proc,omitempty"`
	// Run is a random ID the records of one prune share.
	Run string `json:"run"`
	// Released says the prune Run ended: written when the store kept
	// its records (Object Lock), so that they no longer count.
	Released bool `json:"released,omitempty"`
}

func (l *lockRecord) String() string {
	started := l.Started
	if started.IsZero() {
		started = l.Time
	}
	who := l.Host
	if l.User != "" {
		who = l.User + "@" + l.Host
	}
	return fmt.Sprintf("%s by %s (pid %d), started %s", l.Op, who, l.PID, started.UTC().Format(time.RFC3339))
}

// live reports whether l counts as a running prune at now: its lease, and
// the clocks' skew, have not passed, and, written on this host, its
// process still exists.
func (l *lockRecord) live(now time.Time, host, proc string) bool {
	if !now.Before(l.Expires.Add(lockSkew)) {
		return false
	}
	if host != "" && l.Host == host && proc != "" && l.Proc == proc && l.PID > 0 {
		if l.PID == os.Getpid() {
			// This process's: live while that prune runs (a record
			// Object Lock kept after it ended is not).
			_, running := runningPrunes.Load(l.Run)
			return running
		}
		// A prune of this host that was killed: its process is gone.
		// (A PID reused since only makes the record count until its
		// lease ends, as on another host.)
		if err := syscall.Kill(l.PID, 0); errors.Is(err, syscall.ESRCH) {
			return false
		}
	}
	return true
}

// runningPrunes holds the Run of every prune this process runs: a record
// of this process's PID is live only while its prune runs, since the
// process outlives it (tests run commands in one process; a server would
// run prune after prune). Process state, like the PID it goes with.
var runningPrunes sync.Map

// runLock is the lock of one running prune.
type runLock struct {
	p   *pruner
	rec lockRecord
	mu  sync.Mutex
	ids []id.ID // its records still stored, oldest first (mu)
	// wroteFrom and wroteTo bound, by this host's wall clock, when the
	// newest of them was written (mu).
	wroteFrom, wroteTo time.Time
	// expired are other prunes' records that are no longer live.
	expired []id.ID
	stop    chan struct{}
	done    chan struct{}
}

// lock writes this prune's lock record and checks that no other prune's
// record is live; then it writes a new one every refresh (lockRefresh)
// until unlock. The context
// it returns is cancelled when a refresh fails: a prune whose record may
// have expired must stop (a killed prune leaves the repository consistent).
func (p *pruner) lock(ctx context.Context, refresh time.Duration) (context.Context, *runLock, error) {
	host, username := p.o.who()
	l := &runLock{p: p, rec: lockRecord{Op: "prune", Host: host, User: username, PID: os.Getpid(), Proc: procSpace(), Run: rand.Text()},
		stop: make(chan struct{}), done: make(chan struct{})}
	runningPrunes.Store(l.rec.Run, true)
	if err := l.write(ctx); err != nil {
		runningPrunes.Delete(l.rec.Run)
		return nil, nil, err
	}
	others, err := l.others(ctx)
	if err == nil && len(others) > 0 {
		var b strings.Builder
		for i, o := range others {
			if i > 0 {
				b.WriteString("; ")
			}
			// Live until its expiry and the skew have passed (live);
			// a running prune writes a newer record before then.
			fmt.Fprintf(&b, "%s (%s/%s, live until %s unless renewed)", o, backend.LockFile, o.ID, o.Expires.Add(lockSkew).UTC().Format(time.RFC3339))
		}
		err = fmt.Errorf("%w: %s: wait for it to finish; a prune that was killed on another host counts as running until its lock record expires (at most %s after it was written)",
			ErrLocked, b.String(), lockLease+lockSkew)
	}
	if err != nil {
		l.release(ctx)
		return nil, nil, err
	}
	l.removeExpired(ctx)
	rctx, cancel := context.WithCancelCause(ctx)
	// A write that hangs (a store that stopped answering) must not let
	// the record expire under a running prune either.
	overdue := time.AfterFunc(lockLease-lockRefresh, func() {
		cancel(fmt.Errorf("the prune's lock record was not renewed for %s (another prune could start once it expires)", lockLease-lockRefresh))
	})
	go func() {
		defer close(l.done)
		defer cancel(nil)
		defer overdue.Stop()
		t := time.NewTicker(refresh)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-rctx.Done():
				return
			case <-t.C:
				// Not run for most of the lease (SIGSTOP, a suspended
				// VM): by another prune's clock, up to the skew ahead,
				// the record may have expired and that prune started.
				if err := l.fresh(); err != nil {
					cancel(err)
					return
				}
				if err := l.write(rctx); err != nil {
					cancel(fmt.Errorf("renewing the prune's lock record (another prune could start once it expires): %w", err))
					return
				}
				overdue.Reset(lockLease - lockRefresh)
				l.mu.Lock()
				older := slices.Clone(l.ids[:len(l.ids)-1])
				l.mu.Unlock()
				l.remove(rctx, older)
			}
		}
	}()
	return rctx, l, nil
}

// fresh fails when this prune's newest record is about to expire, or has,
// by the wall clock: it did not run for most of the lease (SIGSTOP, a
// suspended machine, whose monotonic clock and timers stood still), and
// by another prune's clock, up to the skew ahead, the record may have
// expired and that prune started. Checked at each refresh and before
// each pack is deleted.
func (l *runLock) fresh() error {
	l.mu.Lock()
	written, expires := l.rec.Time, l.rec.Expires
	l.mu.Unlock()
	now := l.p.o.now().Round(0) // the wall clock, which a suspend moves on
	if now.Before(expires.Round(0).Add(-lockSkew)) {
		return nil
	}
	return fmt.Errorf("the prune's lock record was not renewed in time (last written %s, now %s): another prune may have started meanwhile; run prune again",
		written.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
}

// lockFresh is fresh of the lock this prune holds (none in a dry run).
func (p *pruner) lockFresh() error {
	if p.held == nil {
		return nil
	}
	return p.held.fresh()
}

// ErrClock says this host's clock and the store's differ by more than
// the skew the prune's safety argument assumes (docs/format.md, "Prune").
var ErrClock = errors.New("this host's clock is off")

// checkClock compares the time the store gives this prune's own record
// (fi, listed) with this host's clock around its writing: a prune's
// safety assumes clocks within lockSkew of each other (docs/format.md,
// "Prune": ε), and a host whose clock is further off would also take
// live records for expired ones, or the reverse. A store that gives no
// time is not checked.
func (l *runLock) checkClock(fi backend.FileInfo) error {
	if fi.ModTime.IsZero() {
		return nil
	}
	l.mu.Lock()
	from, to := l.wroteFrom, l.wroteTo
	l.mu.Unlock()
	stored := fi.ModTime.Round(0)
	var off time.Duration
	var way string
	clock := from
	switch {
	case stored.Before(from.Add(-lockSkew)):
		off, way = from.Sub(stored), "ahead of"
	case stored.After(to.Add(lockSkew)):
		off, way, clock = stored.Sub(to), "behind", to
	default:
		return nil
	}
	return fmt.Errorf("%w: it is %s %s the storage's (which stored this prune's lock record at %s, while this host's clock said %s): a prune's safety assumes clocks within %s of each other; set this host's clock right (NTP) and run prune again",
		ErrClock, off.Round(time.Second), way, stored.UTC().Format(time.RFC3339), clock.UTC().Format(time.RFC3339), lockSkew)
}

// write stores a new record of this prune.
func (l *runLock) write(ctx context.Context) error {
	from := time.Now().Round(0) // the wall clock, for checkClock
	now := l.p.o.now()
	l.mu.Lock()
	l.rec.Time, l.rec.Expires = now, now.Add(lockLease)
	if l.rec.Started.IsZero() {
		l.rec.Started = now
	}
	rec := l.rec
	l.mu.Unlock()
	rid, err := l.p.repo.SaveObject(ctx, backend.LockFile, &rec)
	if err != nil {
		return fmt.Errorf("writing the prune's lock record: %w", err)
	}
	l.mu.Lock()
	l.ids = append(l.ids, rid)
	l.wroteFrom, l.wroteTo = from, time.Now().Round(0)
	l.mu.Unlock()
	return nil
}

// others lists the live lock records of other prunes. A record that does
// not open is not a prune's (or is damaged) and is warned about, not
// obeyed: it could otherwise stop every prune.
func (l *runLock) others(ctx context.Context) ([]*lockRecord, error) {
	now := l.p.o.now()
	// Stored longer ago than a lease and twice the skew (the store's
	// clock against ours, and the prune's against the store's): expired,
	// whatever it says; not read, since on a bucket with Object Lock
	// every prune's records stay for years.
	old := now.Add(-lockLease - 2*lockSkew)
	var ids []id.ID
	var skewErr error
	err := l.p.repo.Backend().List(ctx, backend.LockFile, func(fi backend.FileInfo) error {
		rid, err := id.Parse(fi.Name)
		switch {
		case err != nil:
			l.p.warn(fmt.Sprintf("%s/%s: not a lock record's name, ignored", backend.LockFile, fi.Name))
		case slices.Contains(l.ids, rid):
			skewErr = l.checkClock(fi)
		case fi.Size > maxLockRecord:
			l.p.warn(fmt.Sprintf("%s/%s: %d bytes, too large for a lock record, ignored%s", backend.LockFile, fi.Name, fi.Size, l.removal()))
			l.expired = append(l.expired, rid)
		case !fi.ModTime.IsZero() && fi.ModTime.Before(old):
			l.expired = append(l.expired, rid)
		default:
			ids = append(ids, rid)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the prune lock records: %w", err)
	}
	if skewErr != nil {
		return nil, skewErr
	}
	var live []*lockRecord
	released := make(map[string]bool)
	for _, rid := range ids {
		var r lockRecord
		err := l.p.repo.LoadObject(ctx, backend.LockFile, rid, &r)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // removed since the listing: its prune ended
		case errors.Is(err, repository.ErrObjectCorrupted):
			// It locks nothing: a record nobody can open could
			// otherwise stop every prune.
			l.p.warn(fmt.Sprintf("%s/%s: a damaged lock record, ignored%s: %v", backend.LockFile, rid, l.removal(), err))
			l.expired = append(l.expired, rid)
			continue
		case err != nil:
			return nil, fmt.Errorf("reading the prune lock records: %w", err)
		}
		if r.Run == l.rec.Run {
			continue
		}
		r.ID = rid
		switch {
		case r.Released:
			released[r.Run] = true
			l.expired = append(l.expired, rid)
		case r.live(now, l.rec.Host, l.rec.Proc):
			live = append(live, &r)
		default:
			l.expired = append(l.expired, rid)
		}
	}
	live = slices.DeleteFunc(live, func(r *lockRecord) bool {
		if released[r.Run] {
			l.expired = append(l.expired, r.ID)
			return true
		}
		return false
	})
	return live, nil
}

// removal says what becomes of an object under locks/ that is no live
// record: removed by removeExpired, unless Object Lock keeps it.
func (l *runLock) removal() string {
	if l.p.repo.Config().ObjectLock != nil {
		return fmt.Sprintf(" (Object Lock keeps it; prunes stop reading it %s after it was stored)", lockLease+2*lockSkew)
	}
	return " and removed"
}

// removeExpired removes the records of other prunes that were found no
// longer live (killed prunes, or kept by Object Lock), unless the
// repository retains its objects: there they stay until their retention
// ends, and asking would fail for each, every prune.
func (l *runLock) removeExpired(ctx context.Context) {
	if l.p.repo.Config().ObjectLock != nil {
		l.expired = nil
		return
	}
	for _, rid := range l.expired {
		if err := l.removeRecord(ctx, rid); err != nil {
			l.p.log.Info("expired lock record left", "object", lockNames([]id.ID{rid}), "err", err)
		}
	}
	l.expired = nil
}

// removeRecord removes the lock record rid; one already gone is no error.
func (l *runLock) removeRecord(ctx context.Context, rid id.ID) error {
	err := l.p.repo.Backend().Remove(ctx, backend.Handle{Type: backend.LockFile, Name: rid.String()})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// remove removes the records rids of this prune, as far as the store
// allows (Object Lock keeps them until they only expire), and returns
// those it kept.
func (l *runLock) remove(ctx context.Context, rids []id.ID) (kept []id.ID) {
	for _, rid := range rids {
		if err := l.removeRecord(ctx, rid); err != nil {
			l.p.log.Info("lock record left to expire", "object", lockNames([]id.ID{rid}), "err", err)
			kept = append(kept, rid)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Those kept stay listed: unlock tries them again (a removal that
	// failed for a moment would otherwise leave a record that counts
	// as this prune for its lease after it ended).
	l.ids = slices.DeleteFunc(l.ids, func(x id.ID) bool { return slices.Contains(rids, x) && !slices.Contains(kept, x) })
	return kept
}

// unlock stops the refreshing and releases the lock.
func (l *runLock) unlock(ctx context.Context) {
	close(l.stop)
	<-l.done
	l.release(ctx)
}

// release removes this prune's records; where the store keeps one (Object
// Lock, or a removal that failed), it records the prune's end, so that
// no record of it counts as a running prune afterwards. Also for a prune
// that stopped before it ran (another prune running, a clock off).
func (l *runLock) release(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	if kept := l.remove(ctx, slices.Clone(l.ids)); len(kept) > 0 {
		// The store kept a record (Object Lock): say that this prune
		// ended, so that the next one need not wait for the lease.
		rel := l.rec
		rel.Time, rel.Released = l.p.o.now(), true
		rel.Expires = rel.Time.Add(lockLease)
		if _, err := l.p.repo.SaveObject(ctx, backend.LockFile, &rel); err != nil {
			l.p.warn(fmt.Sprintf("this prune's lock record %s is left and its end not recorded (%v): a prune on this host runs regardless; one on another host waits until %s, unless the record is removed first",
				lockNames(kept), err, l.rec.Expires.Add(lockSkew).UTC().Format(time.RFC3339)))
		}
	}
	runningPrunes.Delete(l.rec.Run)
}

// procSpace names this process's PID space: the kernel's boot ID and the
// PID namespace, so that two containers with one host name, or a host
// rebooted since, never take each other's PIDs for their own. Empty
// where either is unknown (not Linux).
func procSpace() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + ns
}

// lockNames names the lock records rids.
func lockNames(rids []id.ID) string {
	names := make([]string, len(rids))
	for i, rid := range rids {
		names[i] = string(backend.LockFile) + "/" + rid.String()
	}
	return strings.Join(names, ", ")
}
