package main

// The prune stress test of issue 19: backups run as processes, several at
// once, on data that changes between their runs, while snapshots are
// forgotten and 'prune' runs again and again with a grace period of two
// seconds. At the end every snapshot left must verify with --read-data and
// restore byte for byte. Built with the nestguard_unsafe_prune tag, the
// backups ignore prune's deletion-candidate records, and the same run
// loses data: the rule matters.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/miniotest"
)

func TestPruneBesideBackups(t *testing.T) {
	t.Parallel()
	t.Run("local", func(t *testing.T) {
		s := newStress(t, newEnv(t), ngBin, 12*time.Second)
		if damage := s.run(); len(damage) > 0 {
			t.Errorf("%d problems:\n%s", len(damage), strings.Join(damage, "\n"))
		}
	})
	t.Run("minio", func(t *testing.T) {
		e, _ := s3TestEnv(t, miniotest.MinIO, "stress")
		// Each command takes seconds on MinIO: the run is longer, and
		// only the end is verified.
		s := newStress(t, e, ngBin, 30*time.Second)
		s.verifyEach = false
		if damage := s.run(); len(damage) > 0 {
			t.Errorf("%d problems:\n%s", len(damage), strings.Join(damage, "\n"))
		}
	})
}

// TestPruneBesideUnsafeBackups runs the stress test with backups that
// ignore the deletion-candidate records (unsafeBinary): snapshots lose
// blobs, in about half the runs (a loss needs a prune's phase 2 to list
// the snapshots while a backup that reused a marked pack runs, and a
// later backup of the same content heals it). So it runs only when
// NESTGUARD_TEST_UNSAFE_STRESS=1; TestPruneWhileBackupStopped shows the
// same every time.
func TestPruneBesideUnsafeBackups(t *testing.T) {
	t.Parallel()
	if os.Getenv("NESTGUARD_TEST_UNSAFE_STRESS") != "1" {
		t.Skip("set NESTGUARD_TEST_UNSAFE_STRESS=1 to run the stress test without the safety rule")
	}
	s := newStress(t, newEnv(t), unsafeBinary(t), 15*time.Second)
	damage := s.run()
	if len(damage) == 0 {
		t.Fatal("backups that ignore prune's deletion candidates lost nothing this time")
	}
	t.Logf("as expected without the rule, %d problems, the first: %s", len(damage), damage[0])
}

var unsafeBin struct {
	once sync.Once
	path string
	err  error
}

// unsafeBinary builds, once, a nestguard with the nestguard_unsafe_prune
// tag: its backups ignore prune's deletion-candidate records
// (commit.Options.UnsafeIgnoreCandidates).
func unsafeBinary(t *testing.T) string {
	t.Helper()
	skipUnderFIPS(t, "one build shows the rule matters")
	unsafeBin.once.Do(func() {
		unsafeBin.path = filepath.Join(filepath.Dir(ngBin), "nestguard-unsafe")
		out, err := exec.Command("go", "build", "-tags", "nestguard_unsafe_prune", "-o", unsafeBin.path, ".").CombinedOutput()
		if err != nil {
			unsafeBin.err = fmt.Errorf("building the unsafe binary: %v\n%s", err, out)
		}
	})
	if unsafeBin.err != nil {
		t.Fatal(unsafeBin.err)
	}
	return unsafeBin.path
}

// stress is one run: writers back up their directories again and again,
// a pruner forgets and prunes.
type stress struct {
	t   *testing.T
	e   *env
	bin string        // the nestguard that backs up
	dur time.Duration // how long backups and prunes go on
	// verifyEach verifies the repository after each prune.
	verifyEach bool

	mu        sync.Mutex
	saved     map[string]map[string]string // snapshot id -> the content it holds: path -> sha256
	backups   int                          // backups that saved a snapshot
	failed    int                          // backups that failed without saving one
	prunes    int                          // prunes that succeeded
	verifies  int
	rechecked int // backups whose Save stored blobs again
	packs     struct{ marked, deleted, resurrected, repacked int }
	forgotten int
	errs      []string
}

const (
	stressWriters  = 3
	stressFiles    = 24 // per writer
	stressVariants = 4  // contents a file takes in turn
	stressKeep     = 2  // snapshots kept per writer
)

func newStress(t *testing.T, e *env, bin string, dur time.Duration) *stress {
	e.must("init", "--chunk-min", "64", "--chunk-avg", "128", "--chunk-max", "512")
	return &stress{t: t, e: e, bin: bin, dur: dur, verifyEach: true, saved: make(map[string]map[string]string)}
}

// variant is the content of file i of writer w in its variant v: the
// first half of the files the same in every writer, so that writers
// deduplicate against each other's packs, the others each writer's own,
// so that they become unused once its snapshots holding them are
// forgotten; and each variant comes back after it was forgotten, so that
// backups meet blobs that only marked packs hold.
func variant(w, i, v int) []byte {
	if i < stressFiles/2 {
		w = -1
	}
	rng := rand.New(rand.NewPCG(uint64(i)<<32|uint64(uint32(w)), uint64(v)))
	return randomBytes(20_000+rng.IntN(120_000), uint64(i), uint64(uint32(w)), uint64(v))
}

// run runs the writers and the pruner for s.dur, then checks the
// repository (check) and returns every problem found.
func (s *stress) run() []string {
	deadline := time.Now().Add(s.dur)
	var wg sync.WaitGroup
	for w := range stressWriters {
		wg.Go(func() { s.writer(w, deadline) })
	}
	wg.Go(func() { s.pruner(deadline) })
	wg.Wait()
	s.t.Logf("%d backups saved a snapshot (%d stored blobs again before saving), %d failed without one, %d snapshots forgotten, %d prunes, %d verifies; packs %+v",
		s.backups, s.rechecked, s.failed, s.forgotten, s.prunes, s.verifies, s.packs)
	if !s.enough() {
		s.t.Fatalf("too little happened to test anything:\n%s", strings.Join(s.errs, "\n"))
	}
	during := slices.Clone(s.errs)
	return append(during, s.check()...)
}

// going reports whether writers and the pruner go on: until deadline, and
// after it, on a machine too busy for enough to have happened by then,
// until it has (enough) or for four times as long again.
func (s *stress) going(deadline time.Time) bool {
	now := time.Now()
	if now.Before(deadline) {
		return true
	}
	return !s.enough() && now.Before(deadline.Add(4*s.dur))
}

// enough reports whether enough happened to test anything.
func (s *stress) enough() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backups >= stressWriters*2 && s.prunes >= 3 && s.packs.deleted > 0
}

func (s *stress) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// writer changes a few files of its directory and backs it up, until the
// deadline.
func (s *stress) writer(w int, deadline time.Time) {
	dir := filepath.Join(s.e.dir, fmt.Sprintf("w%d", w))
	rng := rand.New(rand.NewPCG(uint64(w), 77))
	content := make(map[string]string)
	set := func(i, v int) {
		name := fmt.Sprintf("d%d/f%02d", i%3, i)
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		b := variant(w, i, v)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			s.fail("writer %d: %v", w, err)
		}
		h := sha256.Sum256(b)
		content[name] = hex.EncodeToString(h[:])
	}
	for i := range stressFiles {
		set(i, rng.IntN(stressVariants))
	}
	for s.going(deadline) {
		for range 4 {
			set(rng.IntN(stressFiles), rng.IntN(stressVariants))
		}
		c := exec.Command(s.bin, ngArgs([]string{"--repo", s.e.repo, "backup", "-v", "--json", "--host", fmt.Sprintf("w%d", w), dir})...)
		c.Env = s.e.cmd().Env
		r := execute(s.t, c)
		if r.code != 0 {
			// A backup may fail when a prune deleted what it reused
			// before it could store it again; it must say so and save
			// nothing (check finds any snapshot not recorded here).
			if !strings.Contains(r.stderr, "no snapshot saved") {
				s.fail("writer %d: backup exit %d, not a refusal to save:\n%s", w, r.code, r.stderr)
			}
			s.mu.Lock()
			s.failed++
			s.mu.Unlock()
			continue
		}
		if strings.Contains(r.stderr, "storing again the blobs") {
			s.mu.Lock()
			s.rechecked++
			s.mu.Unlock()
		}
		var out struct {
			Snapshot string `json:"snapshot"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Snapshot == "" {
			s.fail("writer %d: backup --json: %v\n%s", w, err, r.stdout)
			continue
		}
		s.mu.Lock()
		s.saved[out.Snapshot] = maps(content, dir)
		s.backups++
		s.mu.Unlock()
	}
}

// maps returns content with every path made absolute below dir.
func maps(content map[string]string, dir string) map[string]string {
	m := make(map[string]string, len(content))
	for k, v := range content {
		m[filepath.Join(dir, k)] = v
	}
	return m
}

type listed struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Hostname string    `json:"hostname"`
	Paths    []string  `json:"paths"`
}

func (s *stress) snapshots() ([]listed, bool) {
	r := execute(s.t, s.e.cmd("snapshots", "--json"))
	var l []listed
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &l) != nil {
		s.fail("snapshots: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		return nil, false
	}
	return l, true
}

// pruner forgets all but the newest snapshots of each writer (forget's
// groups: host and paths) and prunes (forget --prune)
// with a grace period of two seconds, until the deadline, then once more
// with none (no backup runs any more).
// After each prune every snapshot must verify: a snapshot that loses a
// blob is found even if a later forget removes it.
func (s *stress) pruner(deadline time.Time) {
	for s.going(deadline) {
		s.forgetAndPrune("2s")
		if !s.verifyEach {
			continue
		}
		if r := execute(s.t, s.e.cmd("verify")); r.code != 0 {
			s.fail("verify after a prune: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		s.mu.Lock()
		s.verifies++
		s.mu.Unlock()
	}
}

// forgetAndPrune runs 'forget --keep-last --prune' once, as a cron job
// would.
func (s *stress) forgetAndPrune(grace string) {
	r := execute(s.t, s.e.cmd("forget", "--json", "--keep-last", fmt.Sprint(stressKeep), "--prune", "--grace", grace, "--max-unused", "0%"))
	var d struct {
		Removed int `json:"removed"`
		Prune   *struct {
			Marked                         *struct{ Packs int }
			Deleted, Resurrected, Repacked struct{ Packs int }
		} `json:"prune"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &d) != nil || d.Prune == nil {
		s.fail("forget --prune --grace %s: exit %d\n%s%s", grace, r.code, r.stdout, r.stderr)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgotten += d.Removed
	s.prunes++
	p := d.Prune
	if p.Marked != nil {
		s.packs.marked += p.Marked.Packs
	}
	s.packs.deleted += p.Deleted.Packs
	s.packs.resurrected += p.Resurrected.Packs
	s.packs.repacked += p.Repacked.Packs
}

// check prunes once more with no backup running, then verifies every
// snapshot left and restores each, and returns what is wrong.
func (s *stress) check() []string {
	var damage []string
	n := len(s.errs)
	s.forgetAndPrune("0s")
	damage = append(damage, s.errs[n:]...)
	if r := execute(s.t, s.e.cmd("verify", "--read-data")); r.code != 0 {
		damage = append(damage, fmt.Sprintf("verify --read-data: exit %d\n%s%s", r.code, r.stdout, r.stderr))
	}
	l, ok := s.snapshots()
	if !ok {
		return append(damage, s.errs[len(s.errs)-1])
	}
	if len(l) != stressWriters*stressKeep {
		damage = append(damage, fmt.Sprintf("%d snapshots left, want %d", len(l), stressWriters*stressKeep))
	}
	for _, sn := range l {
		want, ok := s.saved[sn.ID]
		if !ok {
			damage = append(damage, fmt.Sprintf("snapshot %s: no backup reported saving it", sn.ID[:8]))
			continue
		}
		tgt := filepath.Join(s.e.dir, "restore-"+sn.ID[:8])
		if r := execute(s.t, s.e.cmd("restore", sn.ID, "--target", tgt)); r.code != 0 {
			damage = append(damage, fmt.Sprintf("restore %s: exit %d\n%s", sn.ID[:8], r.code, r.stderr))
			continue
		}
		got := make(map[string]string)
		filepath.WalkDir(tgt, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				b, err := os.ReadFile(p)
				if err == nil {
					h := sha256.Sum256(b)
					got[strings.TrimPrefix(p, tgt)] = hex.EncodeToString(h[:])
				}
			}
			return nil
		})
		for p, h := range want {
			if got[p] != h {
				damage = append(damage, fmt.Sprintf("snapshot %s: %s restored with sha256 %q, backed up %s", sn.ID[:8], p, got[p], h))
			}
		}
		if len(got) != len(want) {
			damage = append(damage, fmt.Sprintf("snapshot %s: %d files restored, %d backed up", sn.ID[:8], len(got), len(want)))
		}
		os.RemoveAll(tgt)
	}
	return damage
}
