package hold

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/retention/locktest"
	"github.com/nestguard/nestguard/internal/snapshot"
)

func backup(t *testing.T, r *repository.Repository, seed uint64, shared []byte) *snapshot.Snapshot {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range 8 {
		b := make([]byte, 50_000)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "shared"), shared, 0o644); err != nil {
		t.Fatal(err)
	}
	sn, _, err := archiver.Backup(context.Background(), r, []string{dir}, archiver.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

func handles(t *testing.T, r *repository.Repository, sn *snapshot.Snapshot) []backend.Handle {
	t.Helper()
	set, err := retention.Objects(context.Background(), r, sn)
	if err != nil {
		t.Fatal(err)
	}
	return set.Handles()
}

func TestAddReleaseWithOverlappingHolds(t *testing.T) {
	ctx := context.Background()
	be := locktest.New(true)
	r := repotest.New(t, repotest.Backend(be))
	shared := make([]byte, 200_000)
	for i := range shared {
		shared[i] = byte(i * 7)
	}
	a := backup(t, r, 1, shared)
	b := backup(t, r, 2, shared)
	c := backup(t, r, 3, nil)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	o := Options{User: "alice", Host: "h1", Now: func() time.Time { now = now.Add(time.Second); return now }}

	res, err := Add(ctx, r, a, "CASE-1", "subpoena", o)
	if err != nil || res.Record == nil || !res.Enforced {
		t.Fatalf("Add: %+v, %v", res, err)
	}
	held := be.Held()
	for _, h := range handles(t, r, a) {
		if !held[h] {
			t.Errorf("%s not held", h)
		}
	}
	for _, h := range handles(t, r, c) {
		if h.Type == backend.SnapshotFile && held[h] {
			t.Errorf("unrelated snapshot %s held", h)
		}
	}
	// Held objects survive deletion attempts.
	if err := be.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: a.ID.String()}); err == nil {
		t.Error("held snapshot removed")
	}
	// Adding the same hold again records nothing new.
	res, err = Add(ctx, r, a, "CASE-1", "again", o)
	if err != nil || res.Record != nil {
		t.Errorf("second Add: %+v, %v", res, err)
	}
	if _, err := Add(ctx, r, b, "CASE-2", "audit", o); err != nil {
		t.Fatal(err)
	}

	// Releasing A keeps what B's hold needs (config, keys, shared packs).
	res, err = Release(ctx, r, a, "CASE-1", "closed", o)
	if err != nil || res.Record == nil || res.Kept == 0 || res.Changed == 0 {
		t.Fatalf("Release: %+v, %v", res, err)
	}
	held = be.Held()
	for _, h := range handles(t, r, b) {
		if !held[h] {
			t.Errorf("%s needed by CASE-2 no longer held", h)
		}
	}
	if held[backend.Handle{Type: backend.SnapshotFile, Name: a.ID.String()}] {
		t.Error("released snapshot still held")
	}
	if err := be.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: a.ID.String()}); err != nil {
		t.Errorf("released snapshot (no retention) cannot be removed: %v", err)
	}
	if _, err := Release(ctx, r, c, "CASE-1", "never held", o); err == nil {
		t.Error("released a hold that never existed")
	}

	records, errs, err := List(ctx, r)
	if err != nil || len(errs) > 0 || len(records) != 3 {
		t.Fatalf("List: %d records, %v, %v", len(records), errs, err)
	}
	if records[0].Action != ActionAdd || records[2].Action != ActionRelease || records[2].User != "alice" || records[2].Reason != "closed" {
		t.Errorf("history: %+v %+v", records[0], records[2])
	}
	active := Active(records)
	if len(active) != 1 || active[0].Case != "CASE-2" {
		t.Errorf("active: %+v", active)
	}
}

func TestActive(t *testing.T) {
	r := repotest.New(t)
	sn := backup(t, r, 4, nil)
	t0 := time.Now()
	rec := func(sec int, action, c string) *Record {
		return &Record{Snapshot: sn.ID, Case: c, Action: action, Time: t0.Add(time.Duration(sec) * time.Second)}
	}
	rs := []*Record{rec(1, ActionAdd, "x"), rec(2, ActionRelease, "x"), rec(3, ActionAdd, "x"), rec(3, ActionAdd, "y"), rec(3, ActionRelease, "y")}
	sortRecords(rs)
	act := Active(rs)
	if len(act) != 1 || act[0].Case != "x" || !act[0].Time.Equal(t0.Add(3*time.Second)) {
		t.Errorf("Active = %+v", act)
	}
}

func TestStorageWithoutObjectLock(t *testing.T) {
	ctx := context.Background()
	r := repotest.New(t)
	sn := backup(t, r, 5, nil)
	// Refused before anything is recorded.
	if _, err := Add(ctx, r, sn, "C", "why", Options{}); !errors.Is(err, ErrNotEnforced) {
		t.Fatalf("Add on plain storage: %v", err)
	}
	if records, _, _ := List(ctx, r); len(records) != 0 {
		t.Fatalf("a refused Add recorded %+v", records)
	}
	// --record-only accepts it.
	res, err := Add(ctx, r, sn, "C", "why", Options{RecordOnly: true})
	if err != nil || res.Record == nil || res.Enforced {
		t.Errorf("record-only Add: %+v, %v", res, err)
	}
	if res, err := Release(ctx, r, sn, "C", "done", Options{}); err != nil || res.Record == nil {
		t.Errorf("Release on plain storage: %+v, %v", res, err)
	}
	records, _, _ := List(ctx, r)
	if len(records) != 2 || records[0].Enforced {
		t.Errorf("records: %+v", records)
	}
}

func TestRecordChecks(t *testing.T) {
	r := repotest.New(t)
	sn := backup(t, r, 6, nil)
	for _, rec := range []*Record{
		{Snapshot: sn.ID, Case: "", Reason: "r", Action: ActionAdd},
		{Snapshot: sn.ID, Case: "c", Reason: " ", Action: ActionAdd},
		{Snapshot: sn.ID, Case: "c", Reason: "r", Action: "delete"},
		{Case: "c", Reason: "r", Action: ActionAdd},
	} {
		if err := Save(context.Background(), r, rec); err == nil {
			t.Errorf("saved invalid record %+v", rec)
		}
	}
}
