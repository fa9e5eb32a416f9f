package prune_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/prune"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/retention/locktest"
)

// lockJSON is a prune lock record as docs/format.md ("Prune") gives it.
type lockJSON struct {
	Op      string    `json:"op"`
	Time    time.Time `json:"time"`
	Expires time.Time `json:"expires"`
	Host    string    `json:"host,omitempty"`
	User    string    `json:"user,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Proc    string    `json:"proc,omitempty"`
	Run     string    `json:"run"`
	Started time.Time `json:"started"`
}

// TestPruneLock: a prune that starts while another runs stops, naming it,
// and deletes nothing; a dry run beside it runs; the running one removes
// its record at its end.
func TestPruneLock(t *testing.T) {
	ctx := context.Background()
	be, _, old := replacedFile(t)
	forget(t, be, old)
	var second error
	var dry *prune.Report
	o := prune.Options{Grace: grace(0), At: func(point string) {
		if point != prune.PointMarked {
			return
		}
		if n := countObjects(t, be, backend.LockFile); n != 1 {
			t.Errorf("%d lock records while a prune runs, want 1", n)
		}
		_, second = prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
		var err error
		dry, err = prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), DryRun: true})
		if err != nil {
			t.Errorf("a dry run beside a prune: %v", err)
		}
	}}
	rep, err := prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil || rep.Deleted.Packs == 0 {
		t.Fatalf("the first prune: %v %+v", err, rep)
	}
	host, _ := os.Hostname()
	if !errors.Is(second, prune.ErrLocked) || !strings.Contains(second.Error(), host) || !strings.Contains(second.Error(), "started") {
		t.Errorf("a second prune at once: %v, want ErrLocked naming the host", second)
	}
	if dry == nil || !dry.DryRun {
		t.Errorf("dry run report: %+v", dry)
	}
	if n := countObjects(t, be, backend.LockFile); n != 0 {
		t.Errorf("%d lock records after the prunes, want 0", n)
	}
}

// TestPruneLockRecords: which records of other prunes stop a prune. Live
// ones do (another host, or this one while the process runs); expired
// ones, and this host's whose process is gone, do not, and are removed;
// one that does not open is not obeyed.
func TestPruneLockRecords(t *testing.T) {
	ctx := context.Background()
	host, _ := os.Hostname()
	now := time.Now()
	proc := func() string {
		boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		ns, err2 := os.Readlink("/proc/self/ns/pid")
		if err != nil || err2 != nil {
			t.Skip("no /proc: the PID check is off")
		}
		return strings.TrimSpace(string(boot)) + "/" + ns
	}()
	for _, c := range []struct {
		name   string
		rec    lockJSON
		locked bool
	}{
		{"another host, live", lockJSON{Op: "prune", Time: now, Expires: now.Add(30 * time.Minute), Host: "elsewhere", PID: 1, Run: "a"}, true},
		{"another host, expired within the skew", lockJSON{Op: "prune", Time: now.Add(-32 * time.Minute), Expires: now.Add(-2 * time.Minute), Host: "elsewhere", PID: 1, Run: "a"}, true},
		{"another host, expired", lockJSON{Op: "prune", Time: now.Add(-2 * time.Hour), Expires: now.Add(-90 * time.Minute), Host: "elsewhere", PID: 1, Run: "a"}, false},
		{"this host, running", lockJSON{Op: "prune", Time: now, Expires: now.Add(30 * time.Minute), Host: host, PID: livePID(t), Proc: proc, Run: "a"}, true},
		{"this process, ended (a record Object Lock kept)", lockJSON{Op: "prune", Time: now, Expires: now.Add(30 * time.Minute), Host: host, PID: os.Getpid(), Proc: proc, Run: "a"}, false},
		{"this host, killed", lockJSON{Op: "prune", Time: now, Expires: now.Add(30 * time.Minute), Host: host, PID: deadPID(t), Proc: proc, Run: "a"}, false},
		{"this host name, another PID namespace", lockJSON{Op: "prune", Time: now, Expires: now.Add(30 * time.Minute), Host: host, PID: deadPID(t), Proc: "other", Run: "a"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			be, _, old := replacedFile(t)
			forget(t, be, old)
			if _, err := repotest.Open(t, be).SaveObject(ctx, backend.LockFile, &c.rec); err != nil {
				t.Fatal(err)
			}
			rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
			if c.locked {
				if !errors.Is(err, prune.ErrLocked) || !strings.Contains(err.Error(), c.rec.Host) {
					t.Fatalf("prune: %v, want ErrLocked naming %s", err, c.rec.Host)
				}
				if rep.Marked != nil || rep.Deleted.Packs != 0 {
					t.Errorf("a refused prune marked or deleted: %+v", rep)
				}
				if n := countObjects(t, be, backend.LockFile); n != 1 {
					t.Errorf("%d lock records after a refused prune, want the other's 1", n)
				}
				return
			}
			if err != nil || rep.Deleted.Packs == 0 {
				t.Fatalf("prune: %v %+v", err, rep)
			}
			if n := countObjects(t, be, backend.LockFile); n != 0 {
				t.Errorf("%d lock records left, want the dead one removed", n)
			}
		})
	}
	t.Run("damaged", func(t *testing.T) {
		be, _, old := replacedFile(t)
		forget(t, be, old)
		junk := []byte("not a sealed record")
		h := backend.Handle{Type: backend.LockFile, Name: strings.Repeat("ab", 32)}
		if err := be.Save(ctx, h, bytes.NewReader(junk), int64(len(junk))); err != nil {
			t.Fatal(err)
		}
		rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
		if err != nil || rep.Deleted.Packs == 0 {
			t.Fatalf("prune beside a damaged lock record: %v %+v", err, rep)
		}
		if !strings.Contains(strings.Join(rep.Warnings, "\n"), "damaged lock record") {
			t.Errorf("no warning of the damaged record: %q", rep.Warnings)
		}
	})
}

// livePID is the PID of a process that runs until the test ends.
func livePID(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/sleep", []string{"sleep", "600"}, &os.ProcAttr{})
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { p.Kill(); p.Wait() })
	return p.Pid
}

// deadPID is the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Skip(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	return p.Pid
}

// TestPruneLockObjectLock: where the store keeps every record (Object
// Lock), a prune that ended says so, and a prune of another host right
// after it runs rather than waiting for the lease; a record stored longer
// ago than the lease is not even read.
func TestPruneLockObjectLock(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	repotest.New(t, repotest.Backend(be), repotest.ObjectLock(&repository.ObjectLock{Mode: repository.LockCompliance, MinRetention: 24 * time.Hour}))
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Host: "a"}); err != nil {
		t.Fatal(err)
	}
	if n := countObjects(t, be, backend.LockFile); n != 2 {
		t.Errorf("%d lock records after a prune on Object Lock, want its record and its release", n)
	}
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Host: "b"}); err != nil {
		t.Fatalf("a prune of another host after one that ended: %v", err)
	}
	// A record of another host whose expiry is an hour away, stored more
	// than a lease and twice the skew ago (by the store's clock): not
	// read, not obeyed.
	now := time.Now()
	if _, err := repotest.Open(t, be).SaveObject(ctx, backend.LockFile, &lockJSON{Op: "prune", Time: now, Expires: now.Add(time.Hour), Host: "c", PID: 1, Run: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Host: "b"}); !errors.Is(err, prune.ErrLocked) {
		t.Fatalf("beside a live record: %v, want ErrLocked", err)
	}
	later := func() time.Time { return time.Now().Add(41 * time.Minute) }
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Host: "b", Now: later}); err != nil {
		t.Fatalf("beside a record stored 41 minutes ago: %v", err)
	}
}

// TestPruneLockRefusalUntil: the refusal says until when the other
// prune's record counts: its expiry plus the clocks' skew (it used to
// give the expiry alone, and a prune retried then was refused again).
func TestPruneLockRefusalUntil(t *testing.T) {
	ctx := context.Background()
	be, _, old := replacedFile(t)
	forget(t, be, old)
	now := time.Now().Truncate(time.Second)
	rec := lockJSON{Op: "prune", Time: now, Expires: now.Add(30 * time.Minute), Host: "elsewhere", PID: 1, Run: "a"}
	if _, err := repotest.Open(t, be).SaveObject(ctx, backend.LockFile, &rec); err != nil {
		t.Fatal(err)
	}
	_, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
	until := now.Add(35 * time.Minute).UTC().Format(time.RFC3339)
	if !errors.Is(err, prune.ErrLocked) || !strings.Contains(err.Error(), until) {
		t.Fatalf("prune: %v, want ErrLocked saying the record counts until %s", err, until)
	}
}

// TestPruneLockRefusedReleases: a prune that stops because another runs,
// on a store that keeps its record (Object Lock), records that it ended:
// once the other prune's record no longer counts, the next prune runs
// rather than waiting out the stopped one's lease.
func TestPruneLockRefusedReleases(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	repotest.New(t, repotest.Backend(be), repotest.ObjectLock(&repository.ObjectLock{Mode: repository.LockCompliance, MinRetention: 24 * time.Hour}))
	now := time.Now()
	// Expired 4 minutes ago: live within the skew for one more minute.
	if _, err := repotest.Open(t, be).SaveObject(ctx, backend.LockFile, &lockJSON{Op: "prune", Time: now.Add(-34 * time.Minute), Expires: now.Add(-4 * time.Minute), Host: "c", PID: 1, Run: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Host: "b"}); !errors.Is(err, prune.ErrLocked) {
		t.Fatalf("beside a live record: %v, want ErrLocked", err)
	}
	if n := countObjects(t, be, backend.LockFile); n != 3 {
		t.Errorf("%d lock records, want the other's, the refused prune's and its release", n)
	}
	later := func() time.Time { return time.Now().Add(2 * time.Minute) }
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Host: "d", Now: later}); err != nil {
		t.Fatalf("after the other record expired, beside the refused prune's released one: %v", err)
	}
}
