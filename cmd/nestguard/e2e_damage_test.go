package main

// End-to-end tests for damaged repository objects (issue 16): a snapshot
// object that cannot be read, a damaged index object, and what verify
// reports while other processes write.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flipByte flips one bit of the byte at the middle of file p.
func flipByte(t *testing.T, p string) {
	t.Helper()
	os.Chmod(p, 0o600)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o400); err != nil {
		t.Fatal(err)
	}
}

// snapshotIDs returns the IDs of the repository's snapshots, oldest first.
func (e *env) snapshotIDs() []string {
	e.t.Helper()
	var snaps []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.must("snapshots", "--json")), &snaps); err != nil {
		e.t.Fatal(err)
	}
	ids := make([]string, len(snaps))
	for i, s := range snaps {
		ids[i] = s.ID
	}
	return ids
}

// twoSnapshots makes a repository with two snapshots of src: f.txt "old",
// then f.txt "new" and g.txt.
func (e *env) twoSnapshots() (src, older, newest string) {
	e.t.Helper()
	src = filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f.txt"), []byte("old"), 0o644)
	e.must("init")
	e.must("backup", src)
	os.WriteFile(filepath.Join(src, "f.txt"), []byte("new"), 0o644)
	os.WriteFile(filepath.Join(src, "g.txt"), []byte("only in the newest"), 0o644)
	e.must("backup", src)
	ids := e.snapshotIDs()
	if len(ids) != 2 {
		e.t.Fatalf("%d snapshots", len(ids))
	}
	return src, ids[0], ids[1]
}

// TestLatestNeverSkipsUnreadableSnapshot: with the newest snapshot object
// damaged, 'latest' must choose nothing anywhere (it named the older one
// and restored it with exit 0), 'snapshots' must say so and exit 3, and the
// readable snapshot must still be reachable by its ID.
func TestLatestNeverSkipsUnreadableSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// No local copy of the newest snapshot, which would serve it
	// (TestSnapshotCopies).
	e.extraEnv = append(e.extraEnv, "NESTGUARD_NO_CACHE=true")
	src, older, newest := e.twoSnapshots()
	flipByte(t, filepath.Join(e.repo, "snapshots", newest))

	other := newEnv(t)
	other.pass = e.pass
	other.extraEnv = []string{"NESTGUARD_FROM_PASSWORD=" + e.pass, "NESTGUARD_NO_CACHE=true"}
	other.must("init")
	for _, args := range [][]string{
		{"restore", "latest", "--target", filepath.Join(e.dir, "r1")},
		{"ls", "latest"},
		{"diff", older[:8], "latest"},
		{"hold", "add", "latest", "--case", "C-1", "--reason", "test", "--record-only"},
		{"backup", src, "--parent", "latest"},
		{"restore", newest[:8], "--target", filepath.Join(e.dir, "r2")},
	} {
		r := e.run(args...)
		if r.code == 0 || !strings.Contains(r.stderr, newest[:8]) {
			t.Errorf("nestguard %s with the newest snapshot unreadable: exit %d, want an error naming %s\n%s",
				strings.Join(args, " "), r.code, newest[:8], r.stderr)
		}
		if args[0] == "restore" && !strings.Contains(r.stderr, "nestguard snapshots") && !strings.Contains(r.stderr, "id") {
			t.Errorf("restore does not say how to choose another snapshot:\n%s", r.stderr)
		}
	}
	if r := other.run("copy", "--from", e.repo, "latest"); r.code == 0 || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("copy latest with the newest snapshot unreadable: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "r1")); err == nil {
		if n := countFiles(t, filepath.Join(e.dir, "r1")); n > 0 {
			t.Errorf("restore latest wrote %d files", n)
		}
	}

	r := e.run("snapshots")
	if r.code != 3 || !strings.Contains(r.stdout, older[:8]) || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("snapshots with one unreadable: exit %d, want 3 listing %s and naming %s\nstdout: %s\nstderr: %s",
			r.code, older[:8], newest[:8], r.stdout, r.stderr)
	}
	r = e.run("snapshots", "--json")
	if r.code != 3 || !strings.Contains(r.stdout, older) || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("snapshots --json with one unreadable: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	if r := e.run("stats"); r.code != 3 || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("stats with one unreadable: exit %d\n%s", r.code, r.stderr)
	}

	// The readable snapshot by its ID, and a new backup (whose parent is
	// only a shortcut) still work.
	tgt := filepath.Join(e.dir, "r3")
	e.must("restore", older[:8], "--target", tgt)
	if b, _ := os.ReadFile(filepath.Join(tgt, src, "f.txt")); string(b) != "old" {
		t.Errorf("restore of %s: f.txt = %q", older[:8], b)
	}
	e.must("backup", src)
	r = e.run("verify")
	if r.code == 0 || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("verify with an unreadable snapshot: exit %d\n%s", r.code, r.stderr)
	}
}

// TestDamagedIndexFallsBackToPackHeaders: one flipped byte in one index
// object made snapshots unrestorable although every pack was intact, and
// verify blamed the packs. Restore and verify read the pack headers
// instead, verify names the index object, and 'repair index' fixes it.
func TestDamagedIndexFallsBackToPackHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 7, 60, 200_000)
	e.must("init")
	e.must("backup", src)
	idx, _ := filepath.Glob(filepath.Join(e.repo, "index", "*"))
	if len(idx) == 0 {
		t.Fatal("no index objects")
	}
	victim := filepath.Base(idx[0])
	flipByte(t, idx[0])

	tgt := filepath.Join(e.dir, "r1")
	r := e.run("restore", "latest", "--target", tgt)
	if r.code != 0 || !strings.Contains(r.stderr, victim) {
		t.Fatalf("restore with a damaged index object: exit %d, want 0 with a warning naming index/%s\n%s", r.code, victim, r.stderr)
	}
	compareTrees(t, src, filepath.Join(tgt, src))

	r = e.run("verify", "--read-data")
	if r.code != 1 || !strings.Contains(r.stderr, "index/"+victim) || !strings.Contains(r.stderr, "repair index") {
		t.Errorf("verify with a damaged index object: exit %d, want 1 naming index/%s\n%s", r.code, victim, r.stderr)
	}
	if strings.Contains(r.stderr, "data/") || strings.Contains(r.stderr, "damaged snapshot") {
		t.Errorf("verify blames packs or snapshots for a damaged index object:\n%s", r.stderr)
	}

	out := e.must("repair", "index")
	if !strings.Contains(out, "removed damaged index/"+victim) {
		t.Errorf("repair index: %s", out)
	}
	if _, err := os.Stat(idx[0]); err == nil {
		t.Error("the damaged index object is still there")
	}
	r = e.run("verify", "--read-data")
	if r.code != 0 || strings.Contains(r.stderr, "warn") || strings.Contains(r.stdout, "not indexed") {
		t.Errorf("verify after repair index: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	tgt = filepath.Join(e.dir, "r2")
	r = e.run("restore", "latest", "--target", tgt)
	if r.code != 0 || strings.Contains(r.stderr, "index") {
		t.Errorf("restore after repair index: exit %d\n%s", r.code, r.stderr)
	}
	compareTrees(t, src, filepath.Join(tgt, src))
}

// writeRandom writes a file of n random bytes.
func writeRandom(t *testing.T, p string, n int, seed uint64) {
	t.Helper()
	if err := os.WriteFile(p, randomBytes(n, seed), 0o644); err != nil {
		t.Fatal(err)
	}
}

// randomBytes returns n bytes that do not compress, the same for the same
// seeds (up to four). They come from ChaCha8's bulk Read: a loop that
// stores a byte at a time is instrumented byte by byte under -race, and
// the suite's hundreds of MiB of test data took minutes of CPU that way.
func randomBytes(n int, seed ...uint64) []byte {
	var key [32]byte
	for i, s := range seed {
		binary.LittleEndian.PutUint64(key[8*i:], s)
	}
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// TestDuplicatePacksOfConcurrentBackups: two backups of the same new data
// at once store it twice; the second copy is listed by an index object but
// holds no location the index uses, and verify called it a pack left by an
// interrupted backup, for ever.
func TestDuplicatePacksOfConcurrentBackups(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	for i := range 4 {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("f%d", i)), 3<<20, uint64(i))
	}
	e.must("init")
	e.backupsAtOnce(src, src)
	if n := len(packFiles(t, e.repo)); n < 2 {
		t.Skipf("the backups did not race (%d packs)", n)
	}
	r := e.run("verify", "--read-data")
	if r.code != 0 || strings.Contains(r.stdout, "interrupted") {
		t.Errorf("verify after two backups of the same data: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("%s", r.stdout)
}

// TestVerifyWhileBackupsRun: verify takes no lock, so backups run while it
// does; it reported their new snapshots damaged ("blob not in index").
// Real processes: two backup loops (one of them of data the other also
// stores) while verify --read-data runs again and again; verify must never
// report damage.
func TestVerifyWhileBackupsRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srcA, srcB := filepath.Join(e.dir, "a"), filepath.Join(e.dir, "b")
	os.MkdirAll(srcA, 0o755)
	os.MkdirAll(srcB, 0o755)
	writeRandom(t, filepath.Join(srcA, "base"), 4<<20, 100)
	e.must("init")
	e.must("backup", srcA)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var backups atomic.Int64
	errs := make(chan string, 16)
	loop := func(name string, seed uint64) {
		defer wg.Done()
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// New data each round; both loops write the same file at the
			// same round into their own directory, so they store the same
			// blobs at about the same time.
			if err := os.WriteFile(filepath.Join(e.dir, name, fmt.Sprintf("r%d", i)), randomBytes(2<<20, seed+i), 0o644); err != nil {
				errs <- err.Error()
				return
			}
			r := e.run("backup", filepath.Join(e.dir, name))
			if r.code != 0 {
				errs <- fmt.Sprintf("backup %s: exit %d\n%s", name, r.code, r.stderr)
				return
			}
			backups.Add(1)
		}
	}
	wg.Add(2)
	go loop("a", 1000)
	go loop("b", 1000)

	deadline := time.Now().Add(45 * time.Second)
	verifies := 0
	for time.Now().Before(deadline) && (verifies < 6 || backups.Load() < 6) {
		r := e.run("verify", "--read-data")
		verifies++
		if r.code != 0 || strings.Contains(r.stdout, "interrupted") {
			t.Errorf("verify %d while backups run: exit %d\n%s%s", verifies, r.code, r.stdout, r.stderr)
			break
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for m := range errs {
		t.Error(m)
	}
	t.Logf("%d verifies during %d backups", verifies, backups.Load())
	e.must("verify", "--read-data")
}

// copyFiles copies the regular files below src to the same paths below
// dst, leaving files dst already has alone.
func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if _, err := os.Stat(to); err == nil {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o400)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDamagedCopyReadFromOtherPack: when two backups at once stored the
// same data, its blobs sit in two packs. Damage to the copies the index
// names first made restore fail and verify report snapshots unrestorable,
// although the other copies were intact. Restore must read the other copy
// (byte for byte, exit 0), and verify must still report the damage (exit
// 1) but name the pack the blobs still read from, and report no snapshot
// damaged that restores.
//
// The two backups are made deterministic: the repository is copied right
// after init and the same data backed up into both, as two processes that
// opened it before either wrote would; then the second one's objects are
// copied into the first. Each snapshot has its own root tree (the
// metadata of /tmp, an ancestor of the data, changes meanwhile), so
// damaging one backup's packs damages its snapshot but not the other.
// Which copy the index names first depends on the order index objects are
// read in, so each backup's packs are damaged in turn.
func TestDamagedCopyReadFromOtherPack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 31, 30, 200_000)
	for i := range 5 { // packs of 16 MiB: a few of them
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", i)), 8<<20, uint64(40+i))
	}
	e.must("init")
	twin := *e
	twin.repo = filepath.Join(e.dir, "twin")
	copyFiles(t, e.repo, twin.repo)
	e.must("backup", src)
	packsA := packFiles(t, e.repo)
	twin.must("backup", src)
	copyFiles(t, twin.repo, e.repo)
	var packsB []string
	for _, p := range packFiles(t, e.repo) {
		if !slices.Contains(packsA, p) {
			packsB = append(packsB, p)
		}
	}
	if len(packsA) < 2 || len(packsB) < 2 {
		t.Fatalf("packs: %d and %d", len(packsA), len(packsB))
	}
	snaps := e.snapshotIDs() // A's, then B's
	e.must("verify", "--read-data")

	for i, damaged := range [][]string{packsA, packsB} {
		intact := snaps[1-i]
		saved := map[string][]byte{}
		for _, p := range damaged {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			saved[p] = b
		}
		removed := filepath.Base(damaged[0])
		os.Remove(damaged[0])
		for _, p := range damaged[1:] {
			flipByte(t, p)
		}

		tgt := filepath.Join(e.dir, fmt.Sprintf("restore%d", i))
		r := e.run("restore", intact, "--target", tgt)
		if r.code != 0 {
			t.Fatalf("restore with one copy of each blob damaged: exit %d\n%s", r.code, r.stderr)
		}
		compareTrees(t, src, filepath.Join(tgt, src))

		r = e.run("verify")
		if r.code != 1 || !strings.Contains(r.stderr, "data/"+removed) || !strings.Contains(r.stderr, "other packs") ||
			strings.Contains(r.stderr, "damaged snapshot "+intact[:8]) {
			t.Errorf("verify with a pack missing whose blobs another pack holds: exit %d, want 1 naming data/%s and not snapshot %s\n%s", r.code, removed, intact[:8], r.stderr)
		}
		r = e.run("verify", "--read-data")
		if r.code != 1 || strings.Contains(r.stderr, "damaged snapshot "+intact[:8]) || !strings.Contains(r.stderr, "still read") {
			t.Errorf("verify --read-data with one copy of each blob damaged: exit %d, want 1 naming the packs blobs still read from and not snapshot %s\n%s", r.code, intact[:8], r.stderr)
		}
		for _, p := range damaged {
			if !strings.Contains(r.stderr, "data/"+filepath.Base(p)) {
				t.Errorf("verify --read-data does not report damaged pack %s", filepath.Base(p)[:8])
			}
		}

		for p, b := range saved {
			os.Chmod(p, 0o600)
			if err := os.WriteFile(p, b, 0o400); err != nil {
				t.Fatal(err)
			}
		}
	}
	// With both copies of the data damaged, the loss is reported.
	for _, p := range append(packsA, packsB...) {
		os.Remove(p)
	}
	r := e.run("verify")
	if r.code != 1 || !strings.Contains(r.stderr, "damaged snapshot "+snaps[0][:8]) || !strings.Contains(r.stderr, "damaged snapshot "+snaps[1][:8]) {
		t.Errorf("verify with both copies of the data gone: exit %d\n%s", r.code, r.stderr)
	}
}

// When index objects are lost, verify and restore report the snapshots
// damaged and say that 'repair index' recovers them; after it, both pass.
func TestLostIndexSuggestsRepairIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	writeRandom(t, filepath.Join(src, "f"), 2<<20, 4640)
	e.must("init")
	e.must("backup", src)
	first, _ := filepath.Glob(filepath.Join(e.repo, "index", "*"))
	if len(first) == 0 {
		t.Fatal("no index objects")
	}
	writeRandom(t, filepath.Join(src, "g"), 1<<20, 4641)
	e.must("backup", src)
	// Packs written within the hour count as a running backup's.
	old := time.Now().Add(-2 * time.Hour)
	packs, _ := filepath.Glob(filepath.Join(e.repo, "data", "*", "*"))
	for _, p := range packs {
		os.Chtimes(p, old, old)
	}
	remove := func(ps []string) {
		for _, p := range ps {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The first backup's index objects: the latest snapshot's tree is
	// indexed, f's data is not.
	remove(first)
	r := e.run("verify")
	if r.code != 1 || !strings.Contains(r.stderr, "run 'nestguard repair index'") {
		t.Errorf("verify with index objects lost: exit %d, no hint to run repair index:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = e.run("restore", "latest", "--target", filepath.Join(e.dir, "out1"))
	if r.code != exitPartial || !strings.Contains(r.stderr, "'nestguard repair index'") {
		t.Errorf("restore with index objects lost: exit %d, no hint to run repair index:\n%s", r.code, r.stderr)
	}

	// Every index object: not even the root tree is indexed.
	rest, _ := filepath.Glob(filepath.Join(e.repo, "index", "*"))
	remove(rest)
	r = e.run("restore", "latest", "--target", filepath.Join(e.dir, "out2"))
	if r.code != 1 || !strings.Contains(r.stderr, "'nestguard repair index'") {
		t.Errorf("restore with every index object lost: exit %d, no hint to run repair index:\n%s", r.code, r.stderr)
	}

	e.must("repair", "index")
	e.must("verify")
	e.must("restore", "latest", "--target", filepath.Join(e.dir, "out3"))
}

// TestSnapshotCopies: commands read snapshots through local copies in the
// cache directory. With the newest snapshot object damaged on the storage
// after it was copied, the copy (its exact bytes) serves 'latest', while
// verify, which reads the storage, reports the damage; a forgotten
// snapshot's copy is dropped; a damaged copy is read again from the
// storage, not reported.
func TestSnapshotCopies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cache := filepath.Join(e.dir, "cache")
	e.extraEnv = append(e.extraEnv, "NESTGUARD_CACHE_DIR="+cache)
	src, older, newest := e.twoSnapshots()
	copies, _ := filepath.Glob(filepath.Join(cache, "*", "snapshots", "*"))
	if len(copies) != 2 {
		t.Fatalf("copies of snapshots in the cache: %v, want 2", copies)
	}
	copyOf := func(id string) string { return filepath.Join(filepath.Dir(copies[0]), id) }

	flipByte(t, filepath.Join(e.repo, "snapshots", newest))
	tgt := filepath.Join(e.dir, "r1")
	e.must("restore", "latest", "--target", tgt)
	if b, _ := os.ReadFile(filepath.Join(tgt, src, "f.txt")); string(b) != "new" {
		t.Errorf("restore latest from the copy: f.txt = %q, want \"new\"", b)
	}
	if r := e.run("verify"); r.code == 0 || !strings.Contains(r.stderr, newest[:8]) || !strings.Contains(r.stderr, copyOf(newest)) {
		t.Errorf("verify with the newest snapshot damaged on the storage (a good copy in the cache): exit %d, want an error naming %s and its copy\n%s", r.code, newest[:8], r.stderr)
	}
	// The copy it names repairs the object.
	os.Remove(filepath.Join(e.repo, "snapshots", newest))
	b, _ := os.ReadFile(copyOf(newest))
	os.WriteFile(filepath.Join(e.repo, "snapshots", newest), b, 0o400)
	if r := e.run("verify", "--no-cache"); r.code != 0 {
		t.Errorf("verify after putting the copy back: exit %d\n%s", r.code, r.stderr)
	}
	flipByte(t, filepath.Join(e.repo, "snapshots", newest))
	if r := e.run("snapshots", "--no-cache"); r.code != 3 || !strings.Contains(r.stderr, newest[:8]) {
		t.Errorf("snapshots --no-cache: exit %d, want 3 naming %s\n%s", r.code, newest[:8], r.stderr)
	}

	// A damaged copy is replaced from the storage, without a word.
	flipByte(t, copyOf(older))
	if r := e.run("snapshots"); r.code != 0 || !strings.Contains(r.stdout, older[:8]) || r.stderr != "" {
		t.Errorf("snapshots with a damaged copy: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	stored, _ := os.ReadFile(filepath.Join(e.repo, "snapshots", older))
	if b, _ := os.ReadFile(copyOf(older)); !bytes.Equal(b, stored) {
		t.Error("the damaged copy was not replaced by the stored object")
	}

	// Forgotten: no longer listed anywhere, its copy dropped.
	e.must("forget", older[:8])
	if r := e.run("snapshots"); strings.Contains(r.stdout, older[:8]) {
		t.Errorf("a forgotten snapshot is listed:\n%s", r.stdout)
	}
	if _, err := os.Stat(copyOf(older)); !os.IsNotExist(err) {
		t.Errorf("the copy of a forgotten snapshot is kept: %v", err)
	}
}
