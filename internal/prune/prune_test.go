package prune_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/candidates"
	"github.com/nestguard/nestguard/internal/checker"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/prune"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/retention/locktest"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// writeFile writes size random bytes (seeded) to path.
func writeFile(t *testing.T, path string, seed uint64, size int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func backup(t *testing.T, r *repository.Repository, dir string) *snapshot.Snapshot {
	t.Helper()
	sn, ferrs, err := archiver.Backup(context.Background(), r, []string{dir}, archiver.BackupOptions{
		Commit: commit.Options{Retain: commit.NoRetention},
	})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	return sn
}

func forget(t *testing.T, be backend.Backend, sn *snapshot.Snapshot) {
	t.Helper()
	if err := be.Remove(context.Background(), backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}); err != nil {
		t.Fatal(err)
	}
}

func grace(d time.Duration) *time.Duration { return &d }

// verify opens the repository afresh and checks every snapshot with
// every pack read back, and that each snapshot's files have the content
// want gives them.
func verify(t *testing.T, be backend.Backend, want map[string][]byte) *repository.Repository {
	t.Helper()
	ctx := context.Background()
	r := repotest.Open(t, be)
	rep, err := checker.New(r, checker.Options{ReadData: true, Percent: 100}).Run(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	snaps, _, err := snapshot.List(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range snaps {
		err := tree.Walk(ctx, r, sn.Tree, func(p string, n *tree.Node) error {
			if n.Type != tree.File {
				return nil
			}
			var got []byte
			for _, b := range n.Content {
				plain, err := r.LoadBlob(ctx, b, nil)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				got = append(got, plain...)
			}
			if w, ok := want[filepath.Base(p)]; ok && !bytes.Equal(got, w) {
				return fmt.Errorf("%s: content differs", p)
			}
			return nil
		}, nil)
		if err != nil {
			t.Fatalf("snapshot %s: %v", sn.ID.Short(), err)
		}
	}
	return r
}

// rewritePack replaces pack h by edit of its first n bytes (all with n
// 0): damage the way a disk or another process would do it.
func rewritePack(t *testing.T, be backend.Backend, h backend.Handle, n int64, edit func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	rd, err := be.Load(ctx, h, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	buf := new(bytes.Buffer)
	_, err = buf.ReadFrom(rd)
	rd.Close()
	if err != nil {
		t.Fatal(err)
	}
	b := edit(buf.Bytes())
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func countObjects(t *testing.T, be backend.Backend, ft backend.FileType) int {
	t.Helper()
	n := 0
	if err := be.List(context.Background(), ft, func(backend.FileInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func packBytes(t *testing.T, be backend.Backend) int64 {
	t.Helper()
	var n int64
	if err := be.List(context.Background(), backend.PackFile, func(fi backend.FileInfo) error { n += fi.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// replacedFile is the scene most prune tests start from: a snapshot
// (old, returned) of a 3 MiB file "a" in dir, then a second one after
// "a" was replaced by a 2 MiB "b". Forgetting old leaves "a"'s packs
// unused.
func replacedFile(t *testing.T) (be *locktest.Backend, dir string, old *snapshot.Snapshot) {
	t.Helper()
	be = locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), 1, 3<<20)
	old = backup(t, r, dir)
	os.Remove(filepath.Join(dir, "a"))
	writeFile(t, filepath.Join(dir, "b"), 2, 2<<20)
	backup(t, r, dir)
	return be, dir, old
}

// TestPruneTwoPhases: a first prune only marks what no snapshot needs; a
// prune after the grace period deletes it; the snapshot left verifies
// and reads back byte for byte.
func TestPruneTwoPhases(t *testing.T) {
	ctx := context.Background()
	be, dir, old := replacedFile(t)
	forget(t, be, old)
	before := packBytes(t, be)

	now := time.Now()
	o := prune.Options{Grace: grace(time.Hour), Now: func() time.Time { return now }}
	rep, err := prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Marked == nil || rep.Marked.Packs == 0 || rep.Deleted.Packs != 0 {
		t.Fatalf("first prune: marked %+v deleted %+v", rep.Marked, rep.Deleted)
	}
	if got := packBytes(t, be); got != before {
		t.Fatalf("the first prune deleted something: %d -> %d bytes", before, got)
	}
	// Within the grace period nothing goes.
	now = now.Add(30 * time.Minute)
	rep, err = prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil || rep.Deleted.Packs != 0 || rep.Marked != nil || rep.Pending.Packs == 0 {
		t.Fatalf("prune within the grace period: %v %+v", err, rep)
	}
	now = now.Add(time.Hour)
	rep, err = prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted.Packs == 0 || rep.RecordsRemoved != 1 || rep.IndexReplaced == 0 {
		t.Fatalf("prune after the grace period: %+v", rep)
	}
	after := packBytes(t, be)
	if after > before-(2<<20) {
		t.Errorf("pack bytes %d -> %d: the forgotten 3 MiB file was not freed", before, after)
	}
	if n := countObjects(t, be, backend.CandidateFile); n != 0 {
		t.Errorf("%d candidate records left", n)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "b"))
	verify(t, be, map[string][]byte{"b": b})
}

// TestPruneResurrects: a pack marked unused that a snapshot needs again
// by the time the record is due is kept, and the record goes.
func TestPruneResurrects(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), 1, 2<<20)
	sn := backup(t, r, dir)
	raw, err := r.Backend().Load(ctx, backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var saved bytes.Buffer
	saved.ReadFrom(raw)
	raw.Close()
	forget(t, be, sn)
	grace0 := prune.Options{Grace: grace(time.Hour)}
	rep, err := prune.Run(ctx, repotest.Open(t, be), grace0)
	if err != nil || rep.Marked == nil {
		t.Fatalf("mark: %v %+v", err, rep)
	}
	// The snapshot comes back (a backup the records did not stop).
	h := backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}
	if err := be.Save(ctx, h, bytes.NewReader(saved.Bytes()), int64(saved.Len())); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Hour)
	rep, err = prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(time.Hour), Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted.Packs != 0 || rep.Resurrected.Packs == 0 || rep.RecordsRemoved != 1 {
		t.Fatalf("resurrection: %+v", rep)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "a"))
	verify(t, be, map[string][]byte{"a": b})
}

// TestPruneRepacks: a pack half of whose blobs are live is repacked
// when more than --max-unused would stay unused, and its old copy goes.
func TestPruneRepacks(t *testing.T) {
	ctx := context.Background()
	// Small files share packs (1 MiB packs): forgetting half of them
	// leaves packs partly used.
	be, want := sweepRepo(t, false)
	dry, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), DryRun: true})
	if err != nil || dry.Repacked.Packs == 0 {
		t.Fatalf("dry run: %v %+v", err, dry)
	}
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repacked.Packs == 0 || rep.RepackedBlobs == 0 || rep.Deleted.Packs < rep.Repacked.Packs {
		t.Fatalf("repack: %+v", rep)
	}
	if rep.Repacked != dry.Repacked {
		t.Errorf("the dry run said it would repack %+v, the prune repacked %+v", dry.Repacked, rep.Repacked)
	}
	// --grace 0 deletes what it marks in the same run: the dry run says so.
	if rep.Deleted != dry.Deleted {
		t.Errorf("the dry run said it would delete %+v, the prune deleted %+v", dry.Deleted, rep.Deleted)
	}
	verify(t, be, want)
	// A second prune finds nothing to do.
	rep, err = prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
	if err != nil || rep.Marked != nil || rep.Deleted.Packs != 0 {
		t.Fatalf("second prune: %v %+v", err, rep)
	}
}

// TestPruneMaxUnusedUnlimited: with --max-unused unlimited nothing is
// repacked, only wholly unused packs go.
func TestPruneMaxUnusedUnlimited(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir := t.TempDir()
	for i := range 16 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d", i)), uint64(i), 60_000)
	}
	first := backup(t, r, dir)
	for i := 0; i < 16; i += 2 {
		os.Remove(filepath.Join(dir, fmt.Sprintf("f%02d", i)))
	}
	backup(t, r, dir)
	forget(t, be, first)
	u := prune.Unused{Unlimited: true}
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), MaxUnused: &u})
	if err != nil || rep.Repacked.Packs != 0 || rep.Unused == 0 {
		t.Fatalf("unlimited: %v %+v", err, rep)
	}
}

// TestPruneDryRunChangesNothing: a dry run reports and leaves every
// object as it was.
func TestPruneDryRunChangesNothing(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), 1, 2<<20)
	sn := backup(t, r, dir)
	forget(t, be, sn)
	names := func() []string {
		var out []string
		for _, ft := range []backend.FileType{backend.PackFile, backend.IndexFile, backend.CandidateFile, backend.SnapshotFile} {
			be.List(ctx, ft, func(fi backend.FileInfo) error { out = append(out, string(ft)+"/"+fi.Name); return nil })
		}
		slices.Sort(out)
		return out
	}
	before := names()
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), DryRun: true})
	if err != nil || rep.Marked == nil || rep.Marked.Packs == 0 {
		t.Fatalf("dry run: %v %+v", err, rep)
	}
	if after := names(); !slices.Equal(before, after) {
		t.Fatalf("dry run changed the repository:\n%v\n%v", before, after)
	}
}

// TestPruneRefusesUnreadableSnapshot: a damaged snapshot stops the prune
// before anything is marked.
func TestPruneRefusesUnreadableSnapshot(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), 1, 1<<20)
	backup(t, r, dir)
	junk := []byte("not a snapshot")
	h := backend.Handle{Type: backend.SnapshotFile, Name: fmt.Sprintf("%064x", 1)}
	if err := be.Save(ctx, h, bytes.NewReader(junk), int64(len(junk))); err != nil {
		t.Fatal(err)
	}
	_, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
	if err == nil {
		t.Fatal("prune with an unreadable snapshot succeeded")
	}
	if n := countObjects(t, be, backend.CandidateFile); n != 0 {
		t.Fatalf("%d records written", n)
	}
}

// TestPruneObjectLock: packs still retained (Object Lock, legal hold)
// are neither marked nor deleted but reported with their dates; the
// others go in the same run; nothing fails.
func TestPruneObjectLock(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r := repotest.New(t, repotest.Backend(be), repotest.ObjectLock(&repository.ObjectLock{Mode: repository.LockGovernance, MinRetention: time.Hour}))
	var offset time.Duration
	advance := func(d time.Duration) { offset += d; be.Advance(d) }
	o := prune.Options{Grace: grace(0), Now: func() time.Time { return time.Now().Add(offset) }}
	// A's objects are retained until T+1h, C's until T+1h40m.
	dirA, dirB, dirC := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(dirA, "a"), 1, 3<<20)
	snA := backup(t, r, dirA)
	advance(40 * time.Minute)
	writeFile(t, filepath.Join(dirC, "c"), 3, 2<<20)
	snC := backup(t, r, dirC)
	writeFile(t, filepath.Join(dirB, "b"), 2, 1<<20)
	backup(t, r, dirB)
	// Forgotten (the store's own Remove: the snapshots' retention is not
	// what this tests).
	for _, sn := range []*snapshot.Snapshot{snA, snC} {
		if err := be.Backend.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}); err != nil {
			t.Fatal(err)
		}
	}
	aPacks := packsOf(t, repotest.Open(t, be), snA)
	held := backend.Handle{Type: backend.PackFile, Name: aPacks[0].String()}
	if err := be.SetLegalHold(ctx, held, true); err != nil {
		t.Fatal(err)
	}
	advance(30 * time.Minute)
	rep, err := prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted.Packs != len(aPacks)-1 {
		t.Errorf("deleted %d packs, want A's %d but the held one", rep.Deleted.Packs, len(aPacks)-1)
	}
	var retainedC int
	for _, ret := range rep.Retained {
		switch {
		case ret.Object == held.String():
			if !ret.Held {
				t.Errorf("held pack reported %+v", ret)
			}
		case ret.Held || ret.Why != "unused" || !ret.Until.After(time.Now().Add(offset)):
			t.Errorf("retained %+v", ret)
		default:
			retainedC++
		}
	}
	if retainedC == 0 {
		t.Errorf("C's packs not reported retained: %+v", rep.Retained)
	}
	if _, err := be.Stat(ctx, held); err != nil {
		t.Fatalf("held pack: %v", err)
	}
	// Once C's retention ended, its packs go too; the held one stays.
	advance(time.Hour)
	rep, err = prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted.Packs != retainedC {
		t.Errorf("deleted %d packs, want C's %d", rep.Deleted.Packs, retainedC)
	}
	if _, err := be.Stat(ctx, held); err != nil {
		t.Fatalf("held pack: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dirB, "b"))
	verify(t, be, map[string][]byte{"b": b})
}

// packsOf returns the packs holding sn's blobs.
func packsOf(t *testing.T, r *repository.Repository, sn *snapshot.Snapshot) []id.ID {
	t.Helper()
	set, err := retention.Objects(context.Background(), r, sn)
	if err != nil {
		t.Fatal(err)
	}
	return set.Packs
}

// sweepRepo is a repository with a prune's work in it: 16 small files
// (and with big, a big one) backed up, then half the small ones (and the
// big one) deleted and backed up again, and the first snapshot
// forgotten. want is what the second snapshot holds.
func sweepRepo(t *testing.T, big bool) (backend.Backend, map[string][]byte) {
	t.Helper()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir := t.TempDir()
	for i := range 16 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d", i)), uint64(i), 60_000)
	}
	if big {
		writeFile(t, filepath.Join(dir, "big"), 99, 3<<20)
	}
	first := backup(t, r, dir)
	for i := 0; i < 16; i += 2 {
		os.Remove(filepath.Join(dir, fmt.Sprintf("f%02d", i)))
	}
	if big {
		os.Remove(filepath.Join(dir, "big"))
	}
	backup(t, r, dir)
	forget(t, be, first)
	want := map[string][]byte{}
	for i := 1; i < 16; i += 2 {
		name := fmt.Sprintf("f%02d", i)
		want[name], _ = os.ReadFile(filepath.Join(dir, name))
	}
	return be, want
}

// TestPruneFinishesKilledSweep: a prune that replaced the index objects
// but was killed before deleting the packs leaves unindexed packs that a
// record names; the next prune deletes them.
func TestPruneFinishesKilledSweep(t *testing.T) {
	ctx := context.Background()
	for _, point := range []string{prune.PointRepacked, prune.PointMarked, prune.PointIndexReplaced, prune.PointIndexRewritten, prune.PointPacksDeleting, prune.PointPacksDeleted} {
		t.Run(point, func(t *testing.T) {
			be, want := sweepRepo(t, true)
			errKilled := errors.New("killed")
			o := prune.Options{Grace: grace(0), At: func(p string) {
				if p == point {
					panic(errKilled)
				}
			}}
			func() {
				defer func() {
					if v := recover(); v != nil && v != errKilled {
						panic(v)
					}
				}()
				prune.Run(ctx, repotest.Open(t, be), o)
				t.Fatalf("point %s never reached", point)
			}()
			verify(t, be, want)
			if point == prune.PointIndexRewritten {
				// verify tells the packs the prune unindexed from those
				// an interrupted backup left.
				crep, err := checker.New(repotest.Open(t, be), checker.Options{}).Run(ctx)
				if err != nil || crep.CandidatePacks == 0 || crep.UnindexedPacks != 0 || crep.RecentPacks != 0 {
					t.Errorf("verify after a prune stopped at %s: %v %+v", point, err, crep)
				}
			}
			if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)}); err != nil {
				t.Fatal(err)
			}
			verify(t, be, want)
			// Clean: nothing is left to mark or delete, no record stays.
			rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), DryRun: true})
			if err != nil || rep.Marked != nil || rep.Deleted.Packs != 0 || rep.Pending.Packs != 0 {
				t.Fatalf("after the second prune: %v %+v", err, rep)
			}
			if n := countObjects(t, be, backend.CandidateFile); n != 0 {
				t.Errorf("%d records left", n)
			}
		})
	}
}

// TestPruneRepairIndexBeside: 'repair index' run at any point of a
// prune (here inside the prune's hook, so at exactly that point) never
// indexes a pack the prune unindexed to delete it (docs/format.md, writers'
// rule 2): after the prune, no index object names a deleted pack, verify
// finds nothing wrong and every file restores.
func TestPruneRepairIndexBeside(t *testing.T) {
	ctx := context.Background()
	for _, point := range []string{prune.PointRepacked, prune.PointMarked, prune.PointIndexReplaced, prune.PointIndexRewritten, prune.PointPacksDeleting, prune.PointPacksDeleted} {
		t.Run(point, func(t *testing.T) {
			be, want := sweepRepo(t, true)
			repaired := false
			o := prune.Options{Grace: grace(0), At: func(p string) {
				if p != point {
					return
				}
				repaired = true
				rr := repotest.Open(t, be)
				recs, _, err := candidates.List(ctx, rr)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := rr.RepairIndex(ctx, candidates.Packs(recs)); err != nil {
					t.Fatalf("repair index at %s: %v", p, err)
				}
			}}
			if _, err := prune.Run(ctx, repotest.Open(t, be), o); err != nil {
				t.Fatal(err)
			}
			if !repaired {
				t.Fatalf("point %s never reached", point)
			}
			// No index object names a pack the prune deleted.
			crep, err := checker.New(repotest.Open(t, be), checker.Options{}).Run(ctx)
			if err != nil || !crep.OK() {
				t.Errorf("verify after the prune, repair index at %s: %v %+v", point, err, crep)
			}
			for _, w := range crep.Warnings {
				t.Errorf("verify after the prune, repair index at %s: warning %+v", point, w)
			}
			// Until the records go, a second prune finishes what is due.
			if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)}); err != nil {
				t.Fatal(err)
			}
			verify(t, be, want)
			crep, err = checker.New(repotest.Open(t, be), checker.Options{}).Run(ctx)
			if err != nil || !crep.OK() || len(crep.Warnings) != 0 || crep.UnindexedPacks != 0 {
				t.Errorf("verify after repair index at %s: %v %+v", point, err, crep)
			}
		})
	}
}

// TestPruneSeesBackupAfterOpen: a backup that finished after the prune
// loaded its index is no reason to refuse, and its data stays.
func TestPruneSeesBackupAfterOpen(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), 1, 1<<20)
	old := backup(t, r, dir)
	pr := repotest.Open(t, be) // the prune's handle, index loaded now
	os.Remove(filepath.Join(dir, "a"))
	writeFile(t, filepath.Join(dir, "b"), 2, 2<<20)
	backup(t, repotest.Open(t, be), dir)
	forget(t, be, old)
	rep, err := prune.Run(ctx, pr, prune.Options{Grace: grace(0)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted.Packs == 0 {
		t.Errorf("nothing deleted: %+v", rep)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "b"))
	verify(t, be, map[string][]byte{"b": b})
}

// oneBackupTwoHandles backs up a 3 MiB file "a" through r, with second
// opened on the same storage before the blobs existed: a caller's
// repotest.StoreAgain(t, r, second) then stores every blob twice, as two
// backups at once do.
func oneBackupTwoHandles(t *testing.T) (be *locktest.Backend, r, second *repository.Repository, dir string, sn *snapshot.Snapshot) {
	t.Helper()
	be = locktest.New(false)
	r = repotest.New(t, repotest.Backend(be))
	second = repotest.Open(t, be)
	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), 1, 3<<20)
	return be, r, second, dir, backup(t, r, dir)
}

// TestPruneDuplicates: every blob stored twice (two backups of the same
// data at once): one copy of each goes, the other stays and reads.
func TestPruneDuplicates(t *testing.T) {
	ctx := context.Background()
	be, r, second, dir, _ := oneBackupTwoHandles(t)
	packs, once := countObjects(t, be, backend.PackFile), packBytes(t, be)
	repotest.StoreAgain(t, r, second)
	if n := countObjects(t, be, backend.PackFile); n != 2*packs {
		t.Fatalf("%d packs after storing again, want %d", n, 2*packs)
	}
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
	if err != nil {
		t.Fatal(err)
	}
	// The two copies are packed differently, so which pack keeps which
	// blob may leave a pack partly used, which is then repacked or, within
	// --max-unused (5% of what stays: up to 5.3% over what is used), kept:
	// the space left is one copy's, give or take that and pack headers.
	if left := packBytes(t, be); rep.Deleted.Packs < packs || left > once+once/10 {
		t.Fatalf("deleted %d packs, %d bytes left of %d stored once: %+v", rep.Deleted.Packs, left, once, rep)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "a"))
	verify(t, be, map[string][]byte{"a": b})
}

// TestPruneDuplicatesTruncated: every blob stored twice, and each pack of
// one copy cut to half its length (a disk that lost their ends). The cut
// packs look fuller than the whole ones (their live bytes over a smaller
// size), but prune must keep the whole copy of every blob and let the cut
// packs go: the data reads back byte for byte afterwards.
func TestPruneDuplicatesTruncated(t *testing.T) {
	ctx := context.Background()
	be, r, second, dir, _ := oneBackupTwoHandles(t)
	first := map[string]bool{}
	if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error { first[fi.Name] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	repotest.StoreAgain(t, r, second)
	var cut []backend.FileInfo
	if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if !first[fi.Name] {
			cut = append(cut, fi)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(cut) == 0 {
		t.Fatal("storing again wrote no pack")
	}
	for _, fi := range cut {
		h := backend.Handle{Type: backend.PackFile, Name: fi.Name}
		rewritePack(t, be, h, fi.Size/2, func(b []byte) []byte { return b })
	}
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "a"))
	verify(t, be, map[string][]byte{"a": b})
}

// TestPruneMaxRepack: --max-repack smaller than any pack repacks nothing;
// the partly used packs stay, and the unused ones still go.
func TestPruneMaxRepack(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir := t.TempDir()
	for i := range 16 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d", i)), uint64(i), 60_000)
	}
	first := backup(t, r, dir)
	for i := 0; i < 16; i += 2 {
		os.Remove(filepath.Join(dir, fmt.Sprintf("f%02d", i)))
	}
	backup(t, r, dir)
	forget(t, be, first)
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), MaxRepack: 1000})
	if err != nil || rep.Repacked.Packs != 0 || rep.Unused == 0 {
		t.Fatalf("--max-repack 1000: %v %+v", err, rep)
	}
	rep, err = prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), MaxRepack: 10 << 20})
	if err != nil || rep.Repacked.Packs == 0 {
		t.Fatalf("--max-repack 10 MiB: %v %+v", err, rep)
	}
}

// TestPruneWAL: the WAL expiry's answer is removed, except what the
// store retains, which is reported; a dry run removes nothing.
func TestPruneWAL(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r := repotest.New(t, repotest.Backend(be))
	names := []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003"}
	for _, n := range names {
		if err := r.SaveNamed(ctx, backend.WALFile, n, []byte("segment "+n)); err != nil {
			t.Fatal(err)
		}
	}
	held := backend.Handle{Type: backend.WALFile, Name: names[1]}
	if err := be.SetLegalHold(ctx, held, true); err != nil {
		t.Fatal(err)
	}
	var kept int
	expire := func(_ context.Context, snaps []*snapshot.Snapshot) ([]string, []walexpiry.Boundary, error) {
		kept = len(snaps)
		return names[:2], []walexpiry.Boundary{{SystemID: 7, From: names[2]}}, nil
	}
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), DryRun: true, WAL: expire})
	if err != nil || !slices.Equal(rep.WALRemoved, names[:1]) || countObjects(t, be, backend.WALFile) != 3 {
		t.Fatalf("dry run: %v %+v", err, rep)
	}
	if n := countObjects(t, be, backend.ExpiryFile); n != 0 {
		t.Fatalf("dry run wrote %d WAL expiry records", n)
	}
	rep, err = prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), WAL: expire})
	if err != nil || !slices.Equal(rep.WALRemoved, names[:1]) || kept != 0 {
		t.Fatalf("prune: %v %+v", err, rep)
	}
	// The boundary is recorded, once: a second prune with the same one
	// writes no other record.
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), WAL: expire}); err != nil {
		t.Fatal(err)
	}
	recs, floors, damaged, err := walexpiry.Records(ctx, repotest.Open(t, be))
	if err != nil || len(recs) != 1 || len(damaged) != 0 || floors[7] != names[2] {
		t.Errorf("WAL expiry records after two prunes: %v, %+v, floors %v, damaged %v", err, recs, floors, damaged)
	}
	if len(rep.Retained) != 1 || rep.Retained[0].Object != held.String() || !rep.Retained[0].Held || rep.Retained[0].Why != "wal" {
		t.Errorf("retained %+v", rep.Retained)
	}
	for i, n := range names {
		_, err := be.Stat(ctx, backend.Handle{Type: backend.WALFile, Name: n})
		if gone := err != nil; gone != (i == 0) {
			t.Errorf("wal/%s: %v", n, err)
		}
	}
}

// expiryFaults fails the saving of WAL expiry records, as a storage that
// refuses them (a role without the permission, a store gone away) does.
type expiryFaults struct{ backend.Backend }

var errExpiryFault = errors.New("permission denied: S3 refused s3:PutObject on expiry/")

func (b *expiryFaults) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	if h.Type == backend.ExpiryFile {
		return errExpiryFault
	}
	return b.Backend.Save(ctx, h, rd, size)
}

// TestPruneWALExpiryRecordFails: when the WAL expiry record cannot be
// written, prune removes no WAL (a segment removed with no record saying
// so would be reported lost by verify) and fails, naming the record and
// the cause.
func TestPruneWALExpiryRecordFails(t *testing.T) {
	ctx := context.Background()
	be := &expiryFaults{Backend: mem.New()}
	r := repotest.New(t, repotest.Backend(be))
	names := []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003"}
	for _, n := range names {
		if err := r.SaveNamed(ctx, backend.WALFile, n, []byte("segment "+n)); err != nil {
			t.Fatal(err)
		}
	}
	expire := func(context.Context, []*snapshot.Snapshot) ([]string, []walexpiry.Boundary, error) {
		return names[:2], []walexpiry.Boundary{{SystemID: 7, From: names[2]}}, nil
	}
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), WAL: expire})
	if err == nil || !errors.Is(err, errExpiryFault) || !strings.Contains(err.Error(), "recording the WAL expiry (no WAL removed)") {
		t.Fatalf("prune with the expiry record refused: %v", err)
	}
	if rep == nil || len(rep.WALRemoved) != 0 {
		t.Errorf("prune with the expiry record refused reports WAL removed: %+v", rep)
	}
	// Nothing left to remove: the boundary is still recorded (a prune
	// run again records what a deleted record or an older version left
	// unrecorded), and its refusal is still the prune's failure.
	none := func(context.Context, []*snapshot.Snapshot) ([]string, []walexpiry.Boundary, error) {
		return nil, []walexpiry.Boundary{{SystemID: 7, From: names[2]}}, nil
	}
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), WAL: none}); !errors.Is(err, errExpiryFault) {
		t.Errorf("prune with no WAL to remove and the expiry record refused: %v", err)
	}
	if n := countObjects(t, be, backend.WALFile); n != len(names) {
		t.Errorf("prune with the expiry record refused left %d of %d WAL objects", n, len(names))
	}
	if n := countObjects(t, be, backend.ExpiryFile); n != 0 {
		t.Errorf("%d WAL expiry records", n)
	}
	// A dry run writes no record, so it is not stopped by the refusal.
	rep, err = prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), DryRun: true, WAL: expire})
	if err != nil || len(rep.WALRemoved) != 2 {
		t.Errorf("dry run with the expiry record refused: %v %+v", err, rep)
	}
}

// TestPruneOrphans: a pack no index lists (an interrupted backup's, or a
// running one's) is marked only once older than the grace period.
func TestPruneOrphans(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	rng := rand.New(rand.NewPCG(3, 3))
	for range 12 {
		b := make([]byte, 100_000)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if _, _, err := r.SaveBlob(ctx, index.DataBlob, b); err != nil {
			t.Fatal(err)
		}
	}
	r.WaitUploads() // the full pack is stored, no index object names it
	if countObjects(t, be, backend.PackFile) == 0 || countObjects(t, be, backend.IndexFile) != 0 {
		t.Fatal("no orphan pack")
	}
	now := time.Now()
	o := prune.Options{Grace: grace(time.Hour), Now: func() time.Time { return now }}
	rep, err := prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil || rep.Marked != nil {
		t.Fatalf("a young orphan was marked: %v %+v", err, rep)
	}
	now = now.Add(2 * time.Hour)
	rep, err = prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil || rep.Marked == nil || rep.Marked.Orphans == 0 {
		t.Fatalf("an old orphan was not marked: %v %+v", err, rep)
	}
	now = now.Add(2 * time.Hour)
	if rep, err = prune.Run(ctx, repotest.Open(t, be), o); err != nil || rep.Deleted.Packs == 0 {
		t.Fatalf("the orphan was not deleted: %v %+v", err, rep)
	}
	if n := countObjects(t, be, backend.PackFile); n != 0 {
		t.Errorf("%d packs left", n)
	}
}

// TestPrunePGControl: a base backup's pg_control blob, which no tree
// references, is live (internal/needs), and stays.
func TestPrunePGControl(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	rng := rand.New(rand.NewPCG(5, 5))
	blob := func() id.ID {
		b := make([]byte, 700_000)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		bid, _, err := r.SaveBlob(ctx, index.DataBlob, b)
		if err != nil {
			t.Fatal(err)
		}
		return bid
	}
	ctl := blob()
	blob() // garbage, in a pack of its own
	root := repotest.SaveTree(t, r)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sn := &snapshot.Snapshot{Time: time.Now(), Kind: snapshot.KindPostgres, Tree: root, Paths: []string{"/pgdata"},
		Extra: []byte(`{"pg_control_blob":"` + ctl.String() + `"}`)}
	if err := snapshot.Save(ctx, r, sn); err != nil {
		t.Fatal(err)
	}
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
	if err != nil || rep.Deleted.Packs == 0 {
		t.Fatalf("prune: %v %+v", err, rep)
	}
	if _, err := repotest.Open(t, be).LoadBlob(ctx, ctl, nil); err != nil {
		t.Fatalf("pg_control after prune: %v", err)
	}
}

// TestPruneDamagedRecord: a damaged candidate record protects nothing
// and deletes nothing. verify reports it; a prune removes it, marks again
// the packs it named that no snapshot needs, and deletes them in time:
// no record stays forever, and neither does the garbage.
func TestPruneDamagedRecord(t *testing.T) {
	ctx := context.Background()
	be, dir, old := replacedFile(t)
	forget(t, be, old)
	before := packBytes(t, be)

	now := time.Now()
	o := prune.Options{Grace: grace(time.Hour), Now: func() time.Time { return now }}
	rep, err := prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil || rep.Marked == nil {
		t.Fatalf("mark: %v %+v", err, rep)
	}
	h := backend.Handle{Type: backend.CandidateFile, Name: rep.Marked.Record.String()}
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, bytes.NewReader([]byte("garbage")), 7); err != nil {
		t.Fatal(err)
	}

	crep, err := checker.New(repotest.Open(t, be), checker.Options{}).Run(ctx)
	if err != nil || !slices.ContainsFunc(crep.Warnings, func(p checker.Problem) bool { return p.Object == h.String() }) {
		t.Errorf("verify of a damaged record: %v, warnings %+v", err, crep.Warnings)
	}

	now = now.Add(2 * time.Hour)
	rep, err = prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil || rep.Marked == nil || rep.Deleted.Packs != 0 || rep.RecordsRemoved != 1 {
		t.Fatalf("prune with a damaged record: %v %+v", err, rep)
	}
	if ok, _ := be.Stat(ctx, h); ok.Name != "" {
		t.Errorf("the damaged record is still there")
	}
	now = now.Add(2 * time.Hour)
	if rep, err = prune.Run(ctx, repotest.Open(t, be), o); err != nil || rep.Deleted.Packs == 0 {
		t.Fatalf("prune after the grace period: %v %+v", err, rep)
	}
	if after := packBytes(t, be); after > before-(2<<20) {
		t.Errorf("pack bytes %d -> %d: the forgotten 3 MiB file was not freed", before, after)
	}
	if n := countObjects(t, be, backend.CandidateFile); n != 0 {
		t.Errorf("%d candidate records left", n)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "b"))
	verify(t, be, map[string][]byte{"b": b})
}

// TestPruneMissingUnusedPack: a pack the index lists that is gone from
// storage, and that no snapshot needs, is damage verify reports for ever
// unless a prune takes it out of the index. Like a pack to delete, it is
// marked first (a pack a writer just stored may look missing to a prune
// that listed the packs before it and read the index after), and taken
// out of the index only by a prune after the grace period.
func TestPruneMissingUnusedPack(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), 1, 3<<20)
	old := backup(t, r, dir)
	var oldPacks []string
	if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error { oldPacks = append(oldPacks, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "a"))
	writeFile(t, filepath.Join(dir, "b"), 2, 2<<20)
	backup(t, r, dir)
	forget(t, be, old)
	for _, p := range oldPacks {
		if err := be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: p}); err != nil {
			t.Fatal(err)
		}
	}
	if crep, err := checker.New(repotest.Open(t, be), checker.Options{}).Run(ctx); err != nil || crep.OK() {
		t.Fatalf("verify with a missing pack: %v %+v", err, crep)
	}

	now := time.Now()
	o := prune.Options{Grace: grace(time.Hour), Now: func() time.Time { return now }}
	rep, err := prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil || rep.Marked == nil || rep.Marked.Missing != len(oldPacks) || rep.IndexReplaced != 0 {
		t.Fatalf("first prune: %v %+v", err, rep)
	}
	now = now.Add(2 * time.Hour)
	rep, err = prune.Run(ctx, repotest.Open(t, be), o)
	if err != nil || rep.IndexReplaced == 0 || rep.RecordsRemoved != 1 {
		t.Fatalf("prune after the grace period: %v %+v", err, rep)
	}
	if n := countObjects(t, be, backend.CandidateFile); n != 0 {
		t.Errorf("%d candidate records left", n)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "b"))
	verify(t, be, map[string][]byte{"b": b})
}

// TestPruneDuplicatesDamaged: every blob stored twice, and the copies in
// one of the two sets of packs damaged in place (a byte flipped in each
// data blob: same size, so nothing tells it without reading). With
// nothing repacked (--max-unused unlimited), prune keeps one copy of each
// blob and deletes packs whose every live blob is kept elsewhere: every
// blob read before the prune (from its good copy) and must read after it,
// and the prune fails naming the packs it kept for that. (It deleted the
// only good copies, silently, before keepGoodCopies.)
func TestPruneDuplicatesDamaged(t *testing.T) {
	reported := damagedCopyRuns(t)
	for _, damageSecond := range []bool{false, true} {
		t.Run(fmt.Sprintf("second=%v", damageSecond), func(t *testing.T) {
			ctx := context.Background()
			be, sn, want, first := storedTwice(t)
			damageGeneration(t, be, first, damageSecond)
			readsAs(t, be, sn, want, "before the prune")
			u := prune.Unused{Unlimited: true}
			rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), MaxUnused: &u})
			reported(err)
			t.Logf("prune: %v; deleted %+v", err, rep.Deleted)
			readsAs(t, be, sn, want, "after the prune")
		})
	}
}

// damagedCopyRuns is for a test that damages each generation of a
// stored-twice repository in turn: which copy of a blob prune keeps (or
// marks) depends on how the two backups packed it, so only one of the
// runs may hit the copies that matter, where prune must fail naming the
// pack it keeps. The returned function takes each run's prune error: one
// saying so counts, any other fails the run. At the end of the test, at
// least one run must have counted.
func damagedCopyRuns(t *testing.T) func(error) {
	reported := 0
	t.Cleanup(func() {
		if reported == 0 && !t.Failed() {
			t.Error("no run damaged a copy prune relied on and had prune say so")
		}
	})
	return func(err error) {
		switch {
		case errors.Is(err, prune.ErrIncomplete) && strings.Contains(err.Error(), "holds the only copy that reads"):
			reported++
		case err != nil:
			t.Errorf("prune with damaged copies: %v", err)
		}
	}
}

// storedTwice is oneBackupTwoHandles with every blob stored again through
// the second handle: it returns the storage, the snapshot, the file's
// content and the first generation's packs.
func storedTwice(t *testing.T) (be *locktest.Backend, sn *snapshot.Snapshot, want []byte, first map[id.ID]bool) {
	t.Helper()
	be, r, second, dir, sn := oneBackupTwoHandles(t)
	want, err := os.ReadFile(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	first = packSet(r)
	repotest.StoreAgain(t, r, second)
	return be, sn, want, first
}

// packSet is the set of packs r's index lists.
func packSet(r *repository.Repository) map[id.ID]bool {
	set := map[id.ID]bool{}
	for _, p := range r.Index().Packs() {
		set[p] = true
	}
	return set
}

// damageGeneration flips a byte in every data blob of the packs in first
// (or, with second, of every other pack): same sizes, so only reading
// tells.
func damageGeneration(t *testing.T, be backend.Backend, first map[id.ID]bool, second bool) {
	t.Helper()
	damaged := map[id.ID][]index.Entry{}
	repotest.Open(t, be).Index().EachLocation(func(e index.Entry) bool {
		if e.Type == index.DataBlob && first[e.Pack] != second {
			damaged[e.Pack] = append(damaged[e.Pack], e)
		}
		return true
	})
	for pid, blobs := range damaged {
		rewritePack(t, be, backend.Handle{Type: backend.PackFile, Name: pid.String()}, 0, func(b []byte) []byte {
			for _, e := range blobs {
				b[e.Offset+e.Length/2] ^= 1
			}
			return b
		})
	}
}

// readsAs checks that snapshot sn's files, read blob by blob from a
// fresh handle, are want.
func readsAs(t *testing.T, be backend.Backend, sn *snapshot.Snapshot, want []byte, when string) {
	t.Helper()
	ctx := context.Background()
	r := repotest.Open(t, be)
	var got []byte
	err := tree.Walk(ctx, r, sn.Tree, func(p string, n *tree.Node) error {
		for _, b := range n.Content {
			plain, err := r.LoadBlob(ctx, b, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			got = append(got, plain...)
		}
		return nil
	}, nil)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: %v (content equal: %v)", when, err, bytes.Equal(got, want))
	}
}

// TestPruneDamagedDuringGrace: every blob stored twice; a prune marks the
// packs of one copy; before the grace period ends, every pack of one
// generation (the marked one or the one that stays) gets a byte flipped
// in each blob. The prune that deletes must not delete the packs holding
// the only copies that read: it reads the copies that stay first, keeps
// those packs and fails naming them. The file reads back afterwards
// either way. (It deleted them, silently, before checkOutsideCopies.)
func TestPruneDamagedDuringGrace(t *testing.T) {
	reported := damagedCopyRuns(t)
	for _, damageSecond := range []bool{false, true} {
		t.Run(fmt.Sprintf("second=%v", damageSecond), func(t *testing.T) {
			ctx := context.Background()
			be, sn, want, first := storedTwice(t)
			now := time.Now()
			o := prune.Options{Grace: grace(time.Hour), Now: func() time.Time { return now }}
			rep, err := prune.Run(ctx, repotest.Open(t, be), o)
			if err != nil || rep.Marked == nil || rep.Marked.Packs == 0 || rep.Deleted.Packs != 0 {
				t.Fatalf("marking prune: %v %+v", err, rep)
			}
			// The first generation's packs, or the second's (which include
			// any the marking prune's repack wrote).
			damageGeneration(t, be, first, damageSecond)
			now = now.Add(2 * time.Hour)
			rep, err = prune.Run(ctx, repotest.Open(t, be), o)
			t.Logf("deleting prune: %v; deleted %+v, resurrected %+v", err, rep.Deleted, rep.Resurrected)
			reported(err)
			readsAs(t, be, sn, want, "after the deleting prune")
		})
	}
}

// TestPruneDryRunWithout: a dry run without a snapshot reports what a
// prune after forgetting it does (forget --dry-run --prune); a prune that
// is not a dry run refuses to prune without snapshots still there.
func TestPruneDryRunWithout(t *testing.T) {
	ctx := context.Background()
	be, dir, old := replacedFile(t)
	without := map[id.ID]bool{old.ID: true}
	if _, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), Without: without}); err == nil {
		t.Fatal("a prune that is not a dry run pruned without a snapshot still there")
	}
	dry, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0), DryRun: true, Without: without})
	if err != nil || dry.Snapshots != 1 || dry.Deleted.Packs == 0 {
		t.Fatalf("dry run without the old snapshot: %v %+v", err, dry)
	}
	forget(t, be, old)
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted != dry.Deleted || rep.Snapshots != dry.Snapshots {
		t.Errorf("the dry run said %d snapshots, deleting %+v; the prune: %d, %+v", dry.Snapshots, dry.Deleted, rep.Snapshots, rep.Deleted)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "b"))
	verify(t, be, map[string][]byte{"b": b})
}

// TestPruneUnlistsLostPack: packs gone from storage that held data a
// snapshot needs (lost) leave the index too, so that the next backup of
// the same source stores that data again instead of reusing what is
// gone (found by a hostile test: they stayed listed while a snapshot
// needed them, and every later backup of the data said "saved" with a
// snapshot that did not restore). The prune says what was lost; the
// damaged snapshot stays, and verify names it.
func TestPruneUnlistsLostPack(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(false)
	r := repotest.New(t, repotest.Backend(be))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), 1, 3<<20)
	writeFile(t, filepath.Join(dir, "b"), 2, 2<<20)
	sn := backup(t, r, dir)
	// Lose every pack but those holding the snapshot's trees.
	keep := map[id.ID]bool{}
	trees := []id.ID{sn.Tree}
	err := tree.Walk(ctx, r, sn.Tree, func(_ string, n *tree.Node) error {
		if n.Subtree != nil {
			trees = append(trees, *n.Subtree)
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range trees {
		for _, e := range r.Index().Locations(tid) {
			keep[e.Pack] = true
		}
	}
	var lost int
	err = be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		pid, _ := id.Parse(fi.Name)
		if keep[pid] {
			return nil
		}
		lost++
		return be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: fi.Name})
	})
	if err != nil || lost == 0 {
		t.Fatalf("%d packs lost: %v", lost, err)
	}
	rep, err := prune.Run(ctx, repotest.Open(t, be), prune.Options{Grace: grace(0)})
	if err != nil || rep.Marked == nil || rep.Marked.Lost != lost || rep.IndexReplaced == 0 ||
		!slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "held data that snapshots need") }) {
		t.Fatalf("prune with lost packs: %v %+v", err, rep)
	}
	r = repotest.Open(t, be)
	sn2 := backup(t, r, dir)
	for _, name := range []string{"a", "b"} {
		n, err := tree.Lookup(ctx, r, sn2.Tree, filepath.ToSlash(filepath.Join(dir, name)))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(dir, name))
		var got []byte
		for _, b := range n.Content {
			plain, err := r.LoadBlob(ctx, b, nil)
			if err != nil {
				t.Fatalf("%s after the backup that followed the loss: %v", name, err)
			}
			got = append(got, plain...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: restored content differs", name)
		}
	}
}
