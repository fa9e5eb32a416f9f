package restorer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// A restore in many small batches (files and blobs) gives the same tree as
// one batch: contents, sparse zero runs, empty files, hard links whose two names fall in
// different batches, and mtimes.
func TestRestoreInBatches(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	mtime := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	want := map[string][]byte{}
	for i := range 60 {
		size := 100 + rng.IntN(4000)
		switch i % 20 {
		case 0:
			size = 3<<20 + rng.IntN(1<<20) // many blobs: crosses batchBlobs
		case 1:
			size = 1 << 20 // zeros: no write, yet the file must exist
		case 2:
			size = 0 // no blob at all
		}
		data := make([]byte, size)
		if i%20 != 1 {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		}
		rel := filepath.Join(fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%02d", i))
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		want[rel] = data
	}
	if err := os.Link(filepath.Join(src, "d0", "f03"), filepath.Join(src, "d2", "zlink")); err != nil {
		t.Fatal(err)
	}
	want[filepath.Join("d2", "zlink")] = want[filepath.Join("d0", "f03")]

	sn, ferrs, err := archiver.Backup(ctx, repo, []string{src}, archiver.BackupOptions{})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	dst := t.TempDir()
	r := New(repo, Options{Target: dst})
	r.batchFiles, r.batchBlobs = 7, 20
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if errs := r.Errors(); len(errs) > 0 {
		t.Fatalf("restore errors: %v", errs)
	}
	root := filepath.Join(dst, src)
	for rel, data := range want {
		p := filepath.Join(root, rel)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: restored %d bytes that differ from the %d backed up", rel, len(got), len(data))
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", rel, fi.ModTime(), mtime)
		}
	}
	a, _ := os.Stat(filepath.Join(root, "d0", "f03"))
	b, _ := os.Stat(filepath.Join(root, "d2", "zlink"))
	if !os.SameFile(a, b) {
		t.Error("hard link restored as a copy")
	}
	// 60 files and a second name of one of them.
	if got, done := r.C.Files.Load(), r.C.Restored.Load(); got != 61 || done != 61 {
		t.Errorf("%d files counted, %d restored, want 61", got, done)
	}
}

// An include that names nothing in the snapshot fails before anything is
// written; one that names a path by its exact bytes (not UTF-8) restores
// just that.
func TestRestoreIncludes(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	for _, name := range []string{"Stra\xdfe.txt", "Stra\u00dfe.txt", "other"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sn, ferrs, err := archiver.Backup(ctx, repo, []string{src}, archiver.BackupOptions{})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	dst := filepath.Join(t.TempDir(), "target")
	missing := []string{"/etc/apt", src + "/Stra\xdfe.txt/x", src + "/Strasse.txt"}
	err = New(repo, Options{Target: dst, Include: append([]string{src + "/other"}, missing...)}).Restore(ctx, sn.Tree)
	var nm *NoMatchError
	if !errors.As(err, &nm) || !slices.Equal(nm.Includes, missing) {
		t.Fatalf("includes matching nothing: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("the target was created: %v", err)
	}
	r := New(repo, Options{Target: dst, Include: []string{src + "/Stra\xdfe.txt"}})
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dst, src))
	if err != nil || len(entries) != 1 || entries[0].Name() != "Stra\xdfe.txt" || r.C.Files.Load() != 1 {
		t.Fatalf("restored %v (%v)", entries, err)
	}
}

// Reserved names at the top of the target may exist without Overwrite
// and are left alone; anything else there still refuses the restore.
// Writeback, and DropBehind with it, change nothing in what is restored.
func TestRestoreReservedWriteback(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	big := make([]byte, 3*writebackBytes+123) // crosses writebackBytes thrice
	rand.NewChaCha8([32]byte{3, 4}).Read(big)
	if err := os.WriteFile(filepath.Join(src, "big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	sn, ferrs, err := archiver.Backup(ctx, repo, []string{src}, archiver.BackupOptions{})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	dst := t.TempDir()
	spooled := filepath.Join(dst, "pg_wal", "spooled")
	if err := os.MkdirAll(filepath.Dir(spooled), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spooled, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := New(repo, Options{Target: dst}).Restore(ctx, sn.Tree); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("a target with something in it: %v", err)
	}
	r := New(repo, Options{Target: dst, Reserved: []string{"pg_wal"}, Writeback: true})
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dst, src, "big")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("restored with writeback: %d bytes, %v", len(got), err)
	}
	if got, err := os.ReadFile(spooled); err != nil || string(got) != "mine" {
		t.Errorf("reserved entry after the restore: %q %v", got, err)
	}
	drop := t.TempDir()
	dr := New(repo, Options{Target: drop, Writeback: true, DropBehind: true})
	dr.dropBehindAfter = writebackBytes // from the second call on
	if err := dr.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(drop, src, "big")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("restored dropping behind: %d bytes, %v", len(got), err)
	}
	if err := os.WriteFile(filepath.Join(dst, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := New(repo, Options{Target: t.TempDir() + "/x", Reserved: []string{"pg_wal"}}).Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	if err := New(repo, Options{Target: dst, Reserved: []string{"pg_wal"}}).Restore(ctx, sn.Tree); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("an unreserved entry in the target: %v", err)
	}
}

// Files written past the page cache (directio.Filler, here every file)
// restore byte for byte: blobs that begin and end anywhere in a page, runs
// of zeros left as holes, a file ending on a page and one ending inside
// one, small and empty files, blobs used again at another offset within a
// page, and compressed blobs.
func TestRestoreFiller(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	rng := rand.NewChaCha8([32]byte{9})
	big := make([]byte, 9<<20+777)
	rng.Read(big[:5<<20])
	rng.Read(big[8<<20:]) // 3 MiB of zeros between
	exact := make([]byte, 300*4096)
	rng.Read(exact)
	// One block three times at offsets that differ within a page (its
	// blobs, stored once, are placed for their first use only), and a
	// compressible file (its blobs decompressed where they are placed).
	x := make([]byte, 3<<19)
	rng.Read(x)
	rep := slices.Concat(x, exact[:333], x, exact[:4096], x, exact[:1])
	text := bytes.Repeat([]byte("a compressible line of text\n"), 150_000)
	files := map[string][]byte{"big": big, "exact": exact, "small": []byte("ten bytes!"), "empty": nil, "rep": rep, "text": text}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sn, ferrs, err := archiver.Backup(ctx, repo, []string{src}, archiver.BackupOptions{})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	dst := t.TempDir()
	r := New(repo, Options{Target: dst, Writeback: true, DropBehind: true, Workers: 3})
	r.fillMin = 1
	if err := r.Restore(ctx, sn.Tree); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(dst, src, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s restored past the page cache: %d bytes (%v), want %d, or not the same", name, len(got), err, len(want))
		}
	}
}

// A restore ends by syncing its target, once every file is written and
// has its metadata, and fails naming the target when that sync fails;
// NoSync skips it.
func TestRestoreSyncs(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	sn, ferrs, err := archiver.Backup(ctx, repo, []string{src}, archiver.BackupOptions{})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	var synced [][]string
	broken := errors.New("EIO, say")
	for _, tc := range []struct {
		name    string
		noSync  bool
		syncErr error
		want    int // syncs
	}{{"sync", false, nil, 1}, {"no sync", true, nil, 0}, {"sync fails", false, broken, 1}} {
		synced = nil
		dst := t.TempDir()
		r := New(repo, Options{Target: dst, NoSync: tc.noSync})
		r.opt.sync = func(_ context.Context, dirs ...string) error {
			// Everything is in place when the sync comes.
			got, err := os.ReadFile(filepath.Join(dst, src, "f"))
			fi, serr := os.Stat(filepath.Join(dst, src, "f"))
			if err != nil || string(got) != "data" || serr != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("%s: synced before the file was restored: %q %v %v", tc.name, got, err, serr)
			}
			synced = append(synced, dirs)
			return tc.syncErr
		}
		err := r.Restore(ctx, sn.Tree)
		if len(synced) != tc.want || (tc.want > 0 && !slices.Equal(synced[0], []string{dst})) {
			t.Errorf("%s: synced %q, want %d sync of %s", tc.name, synced, tc.want, dst)
		}
		var se *SyncError
		switch {
		case tc.syncErr == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.syncErr != nil && (!errors.As(err, &se) || se.Target != dst || !errors.Is(err, broken) || !strings.Contains(err.Error(), dst)):
			t.Errorf("%s: a failed sync gave %v, want a SyncError naming %s", tc.name, err, dst)
		}
	}
}
