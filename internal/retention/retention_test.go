package retention_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/retention/locktest"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// writeFiles creates n files of random data under dir/sub/... and returns dir.
func writeFiles(t *testing.T, dir string, seed uint64, n, size int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("d%d", i%3), "sub")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func backup(t *testing.T, r *repository.Repository, dir string) *snapshot.Snapshot {
	t.Helper()
	sn, ferrs, err := archiver.Backup(context.Background(), r, []string{dir}, archiver.BackupOptions{
		// Retention is what these tests apply and check themselves.
		Commit: commit.Options{Retain: commit.NoRetention},
	})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	return sn
}

func TestObjectsCoversEverythingARestoreReads(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r := repotest.New(t, repotest.Backend(be))
	dir := writeFiles(t, t.TempDir(), 1, 30, 100_000)
	sn := backup(t, r, dir)
	// A second, unrelated backup: its packs are not part of the first.
	other := backup(t, r, writeFiles(t, t.TempDir(), 2, 10, 100_000))

	set, err := retention.Objects(ctx, r, sn)
	if err != nil || set.MissingError() != nil {
		t.Fatalf("Objects: %v %v", err, set.MissingError())
	}
	hs := set.Handles()
	in := make(map[backend.Handle]bool)
	for _, h := range hs {
		if _, err := be.Stat(ctx, h); err != nil {
			t.Errorf("listed object %s does not exist: %v", h, err)
		}
		in[h] = true
	}
	for _, want := range []backend.Handle{{Type: backend.ConfigFile, Name: "config"}, {Type: backend.SnapshotFile, Name: sn.ID.String()}} {
		if !in[want] {
			t.Errorf("%s missing from the set", want)
		}
	}
	if len(set.Keys) != 1 || len(set.Indexes) == 0 || len(set.Packs) < 2 {
		t.Errorf("set: %d keys, %d indexes, %d packs", len(set.Keys), len(set.Indexes), len(set.Packs))
	}
	// Every blob of every pack the snapshot needs is found again from the
	// set alone: with only these objects a restore could run.
	otherSet, _ := retention.Objects(ctx, r, other)
	for _, p := range otherSet.Packs {
		if slices.Contains(set.Packs, p) {
			t.Errorf("pack %s of an unrelated snapshot in the set", p.Short())
		}
	}
	// Removing every object outside the set and reopening still restores.
	keep := make(map[backend.Handle]bool)
	for _, h := range hs {
		keep[h] = true
	}
	for _, ft := range []backend.FileType{backend.PackFile, backend.IndexFile, backend.SnapshotFile} {
		be.List(ctx, ft, func(fi backend.FileInfo) error {
			h := backend.Handle{Type: ft, Name: fi.Name}
			if !keep[h] {
				be.Remove(ctx, h)
			}
			return nil
		})
	}
	r2 := repotest.Open(t, be)
	again, err := retention.Objects(ctx, r2, sn)
	if err != nil || again.MissingError() != nil || len(again.Packs) != len(set.Packs) {
		t.Errorf("after removing everything else: %v, %v, %d packs (had %d)", err, again.MissingError(), len(again.Packs), len(set.Packs))
	}
}

func TestObjectsReportsMissingBlobs(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r := repotest.New(t, repotest.Backend(be))
	sn := backup(t, r, writeFiles(t, t.TempDir(), 3, 5, 50_000))
	// Forget the index: a fresh repository view without LoadIndex.
	r2, err := repository.Open(ctx, be, []byte(repotest.Password), repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := retention.Objects(ctx, r2, sn)
	if err != nil {
		t.Fatal(err)
	}
	if set.MissingError() == nil || len(set.Packs) != 0 {
		t.Errorf("unindexed snapshot: missing %v, %d packs", set.Missing, len(set.Packs))
	}
}

func TestApplyExtendsSharedObjects(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r := repotest.New(t, repotest.Backend(be), repotest.ObjectLock(&repository.ObjectLock{Mode: repository.LockCompliance, MinRetention: time.Hour}))
	dirA := writeFiles(t, t.TempDir(), 4, 20, 60_000)
	a := backup(t, r, dirA)
	onlyA := backup(t, r, writeFiles(t, t.TempDir(), 5, 5, 60_000))
	setA, _ := retention.Objects(ctx, r, a)
	setOnly, _ := retention.Objects(ctx, r, onlyA)

	// Right after the backup, what it wrote is retained long enough
	// already; only the config and key slot, written at init before the
	// backup started, are extended.
	res, err := retention.Apply(ctx, r, a)
	if err != nil || res.Extended != 1+len(setA.Keys) || res.Objects != len(setA.Handles()) {
		t.Fatalf("Apply right after backup: %+v, %v", res, err)
	}
	// A later snapshot sharing A's data (same files) needs them longer.
	b := backup(t, r, dirA)
	b.Time = time.Now().Add(30 * time.Minute) // as if taken half an hour later
	res, err = retention.Apply(ctx, r, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Extended == 0 {
		t.Fatalf("nothing extended: %+v", res)
	}
	want := b.Time.Add(time.Hour)
	setB, _ := retention.Objects(ctx, r, b)
	shared := 0
	for _, p := range setA.Packs {
		if slices.Contains(setB.Packs, p) {
			shared++
			ret, _ := be.Retention(ctx, backend.Handle{Type: backend.PackFile, Name: p.String()})
			if ret.Until.Before(want) {
				t.Errorf("shared pack %s retained until %v, want >= %v", p.Short(), ret.Until, want)
			}
		}
	}
	if shared == 0 {
		t.Fatal("the snapshots share no pack")
	}
	for _, p := range setOnly.Packs {
		if slices.Contains(setB.Packs, p) {
			continue
		}
		ret, _ := be.Retention(ctx, backend.Handle{Type: backend.PackFile, Name: p.String()})
		if !ret.Until.Before(want) {
			t.Errorf("unrelated pack %s extended to %v", p.Short(), ret.Until)
		}
	}
	// Applying again finds nothing to do.
	if res, err := retention.Apply(ctx, r, b); err != nil || res.Extended != 0 {
		t.Errorf("second Apply: %+v, %v", res, err)
	}
}

func TestApplyWithoutPolicy(t *testing.T) {
	r := repotest.New(t, repotest.Backend(locktest.New(true)))
	sn := backup(t, r, writeFiles(t, t.TempDir(), 6, 2, 1000))
	res, err := retention.Apply(context.Background(), r, sn)
	if err != nil || res.Objects != 0 {
		t.Errorf("Apply without policy: %+v, %v", res, err)
	}
}

func TestObjectsOfPostgresSnapshot(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r := repotest.New(t, repotest.Backend(be))
	sn := backup(t, r, writeFiles(t, t.TempDir(), 8, 3, 10_000))
	ctlID, _, err := r.SaveBlob(ctx, 0, []byte("pg_control contents"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"000000010000000000000005", "000000010000000000000006", "000000010000000000000007"} {
		if err := r.SaveNamed(ctx, backend.WALFile, w, []byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	pg := *sn
	pg.Kind = snapshot.KindPostgres
	pg.Extra, _ = json.Marshal(map[string]any{"start_wal": "000000010000000000000005", "stop_wal": "000000010000000000000006",
		"pg_control_blob": ctlID.String(), "system_identifier": "123"})
	if err := snapshot.Save(ctx, r, &pg); err != nil {
		t.Fatal(err)
	}
	set, err := retention.Objects(ctx, r, &pg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(set.WAL, []string{"000000010000000000000005", "000000010000000000000006"}) {
		t.Errorf("WAL = %v", set.WAL)
	}
	e, _ := r.Index().Lookup(ctlID)
	if !slices.Contains(set.Packs, e.Pack) {
		t.Error("the pg_control blob's pack is not in the set")
	}
}
