package pg

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
)

const testSegSize = 1 << 20

// archiveRun stores segments first..last of timeline 1 and returns them.
func archiveRun(t *testing.T, repo *repository.Repository, first, last uint64) map[string][]byte {
	t.Helper()
	segs := map[string][]byte{}
	for no := first; no <= last; no++ {
		name := Segment{TLI: 1, No: no}.Name(testSegSize)
		segs[name] = makeSegment(1, no, testSegSize, 9)
		if err := repo.SaveNamed(context.Background(), backend.WALFile, name, segs[name]); err != nil {
			t.Fatal(err)
		}
	}
	return segs
}

func spoolNames(t *testing.T, spool string) []string {
	t.Helper()
	entries, _ := os.ReadDir(spool)
	var out []string
	for _, e := range entries {
		if pgmeta.IsSegment(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestRestoreWALPrefetch(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	segs := archiveRun(t, repo, 1, 20)
	pgWAL := filepath.Join(t.TempDir(), "pg_wal")
	os.Mkdir(pgWAL, 0o700)
	dest := filepath.Join(pgWAL, "RECOVERYXLOG")
	spool := filepath.Join(pgWAL, ".nestguard-spool")
	o := RestoreWALOptions{Prefetch: 4}

	hits := 0
	for no := uint64(1); no <= 20; no++ {
		name := Segment{TLI: 1, No: no}.Name(testSegSize)
		if _, err := os.Stat(filepath.Join(spool, name)); err == nil {
			hits++
		}
		if err := RestoreWAL(ctx, repo, name, dest, o); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := os.ReadFile(dest)
		if err != nil || !bytes.Equal(got, segs[name]) {
			t.Fatalf("%s: restored content differs (%v)", name, err)
		}
		if n := spoolNames(t, spool); len(n) > 4 {
			t.Errorf("spool holds %d segments, more than the 4 asked for: %v", len(n), n)
		}
		os.Remove(dest) // PostgreSQL renames it away
	}
	t.Logf("spool hit rate: %d of 19 requests after the first", hits)
	if hits < 19 {
		t.Errorf("spool hits: %d of 19", hits)
	}
	// Past the end: not found, quietly, and the spool goes away.
	err := RestoreWAL(ctx, repo, Segment{TLI: 1, No: 21}.Name(testSegSize), dest, o)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("past the end: %v", err)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Error("dest written for a missing segment")
	}
	if _, err := os.Stat(spool); err == nil {
		t.Errorf("spool left after the end of the archive: %v", spoolNames(t, spool))
	}
}

func TestRestoreWALSpoolHygiene(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	archiveRun(t, repo, 1, 12)
	pgWAL := t.TempDir()
	dest := filepath.Join(pgWAL, "RECOVERYXLOG")
	spool := filepath.Join(t.TempDir(), "elsewhere") // --spool-dir on another directory
	o := RestoreWALOptions{Prefetch: 3, SpoolDir: spool}

	if err := RestoreWAL(ctx, repo, Segment{TLI: 1, No: 2}.Name(testSegSize), dest, o); err != nil {
		t.Fatal(err)
	}
	if got := spoolNames(t, spool); len(got) != 3 || got[0] != (Segment{TLI: 1, No: 3}).Name(testSegSize) {
		t.Fatalf("spool after segment 2: %v", got)
	}
	// A jump forward (recovery skipping ahead) drops what is behind.
	if err := RestoreWAL(ctx, repo, Segment{TLI: 1, No: 5}.Name(testSegSize), dest, o); err != nil {
		t.Fatal(err)
	}
	for _, n := range spoolNames(t, spool) {
		if n < (Segment{TLI: 1, No: 5}).Name(testSegSize) {
			t.Errorf("stale %s kept", n)
		}
	}
	// A damaged spool file is not handed to PostgreSQL: it is fetched again.
	six := filepath.Join(spool, Segment{TLI: 1, No: 6}.Name(testSegSize))
	if err := os.Truncate(six, 1000); err != nil {
		t.Fatal(err)
	}
	if err := RestoreWAL(ctx, repo, Segment{TLI: 1, No: 6}.Name(testSegSize), dest, o); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Size() != testSegSize {
		t.Errorf("segment 6 after a damaged spool copy: %v %v", fi, err)
	}
	// History files are fetched directly, never prefetched.
	if err := RestoreWAL(ctx, repo, "00000002.history", dest, o); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing history file: %v", err)
	}
}

func TestRestoreWALCorrupted(t *testing.T) {
	ctx := context.Background()
	repo, repoDir := newLocalRepo(t)
	archiveRun(t, repo, 1, 3)
	name := Segment{TLI: 1, No: 2}.Name(testSegSize)
	flipByte(t, filepath.Join(repoDir, "wal", name))
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	err := RestoreWAL(ctx, repo, name, dest, RestoreWALOptions{Prefetch: 2})
	if !errors.Is(err, repository.ErrObjectCorrupted) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("corrupted object: %v", err)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Error("a damaged segment was written to dest")
	}
	// Prefetching skips the damaged one; requesting it still fails loudly.
	if err := RestoreWAL(ctx, repo, Segment{TLI: 1, No: 1}.Name(testSegSize), dest, RestoreWALOptions{Prefetch: 2}); err != nil {
		t.Fatal(err)
	}
	os.Remove(dest)
	if err := RestoreWAL(ctx, repo, name, dest, RestoreWALOptions{Prefetch: 2}); !errors.Is(err, repository.ErrObjectCorrupted) {
		t.Errorf("damaged segment after a prefetch: %v", err)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Error("a damaged segment was written to dest")
	}
	if err := RestoreWAL(ctx, repo, "not-wal", dest, RestoreWALOptions{}); err == nil {
		t.Error("a bad name was accepted")
	}
}

func TestRestoreWALBackground(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	archiveRun(t, repo, 1, 4)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	var asked []string
	o := RestoreWALOptions{Prefetch: 2, Background: func(spool string, names []string) error {
		asked = names
		return nil
	}}
	if err := RestoreWAL(ctx, repo, Segment{TLI: 1, No: 1}.Name(testSegSize), dest, o); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 2 || asked[0] != (Segment{TLI: 1, No: 2}).Name(testSegSize) || asked[1] != (Segment{TLI: 1, No: 3}).Name(testSegSize) {
		t.Errorf("background prefetch asked for %v", asked)
	}
	if n := spoolNames(t, filepath.Join(filepath.Dir(dest), ".nestguard-spool")); len(n) != 0 {
		t.Errorf("fetched in the foreground although a background prefetch was set: %v", n)
	}
}

// TestRestoreWALEndOfRecoveryDropsSpool: recovery that stops at a target
// before the end of the archive never asks for a missing segment; its
// request for the next timeline's history file clears the spool.
func TestRestoreWALEndOfRecoveryDropsSpool(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	archiveRun(t, repo, 1, 6)
	pgWAL := t.TempDir()
	dest := filepath.Join(pgWAL, "RECOVERYXLOG")
	spool := filepath.Join(pgWAL, ".nestguard-spool")
	if err := RestoreWAL(ctx, repo, Segment{TLI: 1, No: 2}.Name(testSegSize), dest, RestoreWALOptions{Prefetch: 3}); err != nil {
		t.Fatal(err)
	}
	if n := spoolNames(t, spool); len(n) != 3 {
		t.Fatalf("spool %v", n)
	}
	err := RestoreWAL(ctx, repo, "00000002.history", filepath.Join(pgWAL, "RECOVERYHISTORY"), RestoreWALOptions{Prefetch: 3})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if _, err := os.Stat(spool); err == nil {
		t.Errorf("spool kept after the end of recovery: %v", spoolNames(t, spool))
	}
}

// TestRestoreWALStaleSpool: a spool filled for another restore (another
// session, or another server run) is never handed to PostgreSQL, on the
// fast path or after the repository is open; the spool of this restore
// is, without the repository.
func TestRestoreWALStaleSpool(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	segs := archiveRun(t, repo, 1, 5)
	pgWAL := filepath.Join(t.TempDir(), "pg_wal")
	os.Mkdir(pgWAL, 0o700)
	dest := filepath.Join(pgWAL, "RECOVERYXLOG")
	spool := filepath.Join(pgWAL, ".nestguard-spool")
	two := Segment{TLI: 1, No: 2}.Name(testSegSize)
	noBackground := func(string, []string) error { return nil }

	// Another restore's spool: a valid segment of another cluster's
	// history under the same name.
	if _, err := PrefetchWAL(ctx, repo, spool, SpoolIdentity("old", dest), []string{two}, 1, nil); err != nil {
		t.Fatal(err)
	}
	other := makeSegment(1, 2, testSegSize, 77)
	if err := os.WriteFile(filepath.Join(spool, two), other, 0o600); err != nil {
		t.Fatal(err)
	}
	o := RestoreWALOptions{Prefetch: 2, Session: "new", Background: noBackground}
	if ok, err := TakeSpooled(two, dest, o); ok || err != nil {
		t.Fatalf("fast path took another session's spool: %v %v", ok, err)
	}
	if err := RestoreWAL(ctx, repo, two, dest, o); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, segs[two]) {
		t.Fatal("restored another session's spooled segment, not the repository's")
	}
	if _, err := os.Stat(filepath.Join(spool, two)); err == nil {
		t.Error("another session's segment kept in the spool")
	}
	os.Remove(dest)

	// This session's spool: taken without the repository (nil), and
	// bound to it.
	three := Segment{TLI: 1, No: 3}.Name(testSegSize)
	if _, err := PrefetchWAL(ctx, repo, spool, SpoolIdentity("new", dest), []string{three}, 1, nil); err != nil {
		t.Fatal(err)
	}
	ok, err := TakeSpooled(three, dest, o)
	if !ok || err != nil {
		t.Fatalf("fast path: %v %v", ok, err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, segs[three]) {
		t.Fatal("fast path restored the wrong content")
	}
	os.Remove(dest)

	// Without a session the spool belongs to the running server: a spool
	// of an earlier run (another postmaster.pid) is not used.
	four := Segment{TLI: 1, No: 4}.Name(testSegSize)
	pid := filepath.Join(filepath.Dir(pgWAL), "postmaster.pid")
	if err := os.WriteFile(pid, []byte("4242\n/data\n1700000000\n5432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if id := SpoolIdentity("", dest); id != "server 4242 1700000000 boot "+bootID() || bootID() == "" {
		t.Fatalf("identity of the running server: %q", id)
	}
	if _, err := PrefetchWAL(ctx, repo, spool, SpoolIdentity("", dest), []string{four}, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pid, []byte("4343\n/data\n1700000100\n5432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o.Session = ""
	if ok, err := TakeSpooled(four, dest, o); ok || err != nil {
		t.Fatalf("fast path took an earlier server run's spool: %v %v", ok, err)
	}
	if _, err := os.Stat(filepath.Join(spool, four)); err != nil {
		t.Fatalf("spool of the earlier run: %v", err)
	}
	if err := os.WriteFile(pid, []byte("4242\n/data\n1700000000\n5432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := TakeSpooled(four, dest, o); !ok || err != nil {
		t.Fatalf("fast path with the same server: %v %v", ok, err)
	}
	os.Remove(dest)

	// Spooled files are not synced: a spool filled before a crash of the
	// operating system (another boot) is never used, even by the same
	// session, since its files may be torn.
	five := Segment{TLI: 1, No: 5}.Name(testSegSize)
	if _, err := PrefetchWAL(ctx, repo, spool, "session s boot 00000000-before-the-crash", []string{five}, 1, nil); err != nil {
		t.Fatal(err)
	}
	o.Session = "s"
	if ok, err := TakeSpooled(five, dest, o); ok || err != nil {
		t.Fatalf("fast path took a spool of another boot: %v %v", ok, err)
	}
	if err := RestoreWAL(ctx, repo, five, dest, o); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, segs[five]) {
		t.Fatal("restored the wrong content after a spool of another boot")
	}
	if _, err := os.Stat(filepath.Join(spool, five)); err == nil {
		t.Fatal("the spool of another boot is still there")
	}
}

// TestRestoreWALPrefilledSpool: what 'pg restore' prefetched survives
// recovery's first request (the next timeline's history file, which does
// not exist); the same request after segments were served ends recovery
// and clears the spool.
func TestRestoreWALPrefilledSpool(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	archiveRun(t, repo, 1, 3)
	pgWAL := t.TempDir()
	dest := filepath.Join(pgWAL, "RECOVERYXLOG")
	spool := filepath.Join(pgWAL, ".nestguard-spool")
	one, two := Segment{TLI: 1, No: 1}.Name(testSegSize), Segment{TLI: 1, No: 2}.Name(testSegSize)
	if n, err := PrefetchWAL(ctx, repo, spool, SpoolIdentity("s", ""), []string{one, two}, 2, nil); n != 2 || err != nil {
		t.Fatalf("prefill: %d %v", n, err)
	}
	o := RestoreWALOptions{Prefetch: 3, Session: "s", Background: func(string, []string) error { return nil }}
	history := filepath.Join(pgWAL, "RECOVERYHISTORY")
	if err := RestoreWAL(ctx, repo, "00000002.history", history, o); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if n := spoolNames(t, spool); len(n) != 2 {
		t.Fatalf("prefilled spool after the first history request: %v", n)
	}
	if ok, err := TakeSpooled(one, dest, o); !ok || err != nil {
		t.Fatalf("prefilled segment: %v %v", ok, err)
	}
	if err := RestoreWAL(ctx, repo, "00000002.history", history, o); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if _, err := os.Stat(spool); err == nil {
		t.Errorf("spool kept after the end of recovery: %v", spoolNames(t, spool))
	}
}

// TestRestoreWALAbsent: a segment a prefetch found missing (the end of
// the archive) is not prefetched again for every request that follows;
// asking for it still reads the repository.
func TestRestoreWALAbsent(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	archiveRun(t, repo, 1, 4)
	pgWAL := t.TempDir()
	dest := filepath.Join(pgWAL, "RECOVERYXLOG")
	spool := filepath.Join(pgWAL, ".nestguard-spool")
	five := Segment{TLI: 1, No: 5}.Name(testSegSize)
	if n, err := PrefetchWAL(ctx, repo, spool, "", []string{five}, 1, nil); n != 0 || err != nil {
		t.Fatalf("prefetching a missing segment: %d %v", n, err)
	}
	var asked []string
	o := RestoreWALOptions{Prefetch: 4, Background: func(_ string, names []string) error {
		asked = names
		return nil
	}}
	if err := RestoreWAL(ctx, repo, Segment{TLI: 1, No: 2}.Name(testSegSize), dest, o); err != nil {
		t.Fatal(err)
	}
	if want := []string{Segment{TLI: 1, No: 3}.Name(testSegSize), Segment{TLI: 1, No: 4}.Name(testSegSize)}; !slices.Equal(asked, want) {
		t.Errorf("prefetch asked for %v, want %v", asked, want)
	}
	archiveRun(t, repo, 5, 5) // archived since: the request itself finds it
	if err := RestoreWAL(ctx, repo, five, dest, o); err != nil {
		t.Fatalf("a segment archived after a prefetch missed it: %v", err)
	}
}
