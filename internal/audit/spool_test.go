package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
)

func TestSpoolBatches(t *testing.T) {
	sp := NewSpool(t.TempDir(), testLogID)
	now := time.Now()
	var got [][]BatchItem
	record := func(items []BatchItem) error {
		got = append(got, append([]BatchItem(nil), items...))
		return nil
	}
	if n, err := sp.Flush(now, false, record); n != 0 || err != nil {
		t.Fatalf("flush of no spool: %d, %v", n, err)
	}
	for i := range SpoolItems - 1 {
		if err := sp.Add(BatchItem{Time: now, Arg: fmt.Sprint(i), Outcome: Success}); err != nil {
			t.Fatal(err)
		}
		if n, err := sp.Flush(now, false, record); n != 0 || err != nil {
			t.Fatalf("flush after %d items: %d, %v", i+1, n, err)
		}
	}
	// A failing append keeps the items.
	sp.Add(BatchItem{Time: now, Arg: "last", Outcome: Failed})
	if _, err := sp.Flush(now, false, func([]BatchItem) error { return errors.New("storage down") }); err == nil {
		t.Fatal("a failed record did not fail the flush")
	}
	if n, err := sp.Flush(now, false, record); n != SpoolItems || err != nil || len(got) != 1 || len(got[0]) != SpoolItems || got[0][SpoolItems-1].Arg != "last" {
		t.Fatalf("flush of %d items: %d, %v, %d records", SpoolItems, n, err, len(got))
	}
	// Empty again; one old item is due by age.
	sp.Add(BatchItem{Time: now.Add(-2 * SpoolAge), Arg: "old", Outcome: Success})
	if n, _ := sp.Flush(now, false, record); n != 1 {
		t.Errorf("an item older than %s was not flushed", SpoolAge)
	}
}

// TestSpoolConcurrent: calls adding while others flush lose nothing.
func TestSpoolConcurrent(t *testing.T) {
	sp := NewSpool(t.TempDir(), testLogID)
	var mu sync.Mutex
	seen := make(map[string]int)
	record := func(items []BatchItem) error {
		mu.Lock()
		defer mu.Unlock()
		for _, it := range items {
			seen[it.Arg]++
		}
		return nil
	}
	var wg sync.WaitGroup
	const workers, each = 4, 100
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := sp.Add(BatchItem{Time: time.Now(), Arg: fmt.Sprint(w, "-", i), Outcome: Success}); err != nil {
					t.Error(err)
				}
				if _, err := sp.Flush(time.Now(), false, record); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	sp.Flush(time.Now(), true, record)
	if len(seen) != workers*each {
		t.Fatalf("%d items recorded, want %d", len(seen), workers*each)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("item %s recorded %d times", k, n)
		}
	}
}

func TestWatch(t *testing.T) {
	be, err := local.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w, written := Watch(be)
	if _, ok := w.(backend.Streamer); !ok {
		t.Fatal("a watched directory is no longer a Streamer: packs would be spooled")
	}
	ctx := context.Background()
	save := func(ft backend.FileType, name string) {
		if err := w.Save(ctx, backend.Handle{Type: ft, Name: name}, bytes.NewReader([]byte(name)), int64(len(name))); err != nil {
			t.Fatal(err)
		}
	}
	save(backend.SnapshotFile, "s1")
	save(backend.IndexFile, "i1")
	save(backend.IndexFile, "i2")
	save(backend.AuditFile, "x-00000000000000000000")
	po, err := w.(backend.Streamer).Create(ctx, backend.PackFile)
	if err != nil {
		t.Fatal(err)
	}
	po.Write([]byte("pack"))
	if err := po.Commit(ctx, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(written.List())
	if want := "[snapshots/s1 -snapshots/s1 data: 1 objects index: 2 objects]"; got != want {
		t.Errorf("written %s, want %s", got, want)
	}
	if backend.Unwrapper(w.(backend.Unwrapper)).Unwrap() != be {
		t.Error("Unwrap does not reach the store")
	}
}

// TestWatchBeforeRemove: the gate runs once, before the first removal of
// anything but a lock or an audit entry, and a gate that fails lets
// nothing be removed.
func TestWatchBeforeRemove(t *testing.T) {
	ctx := context.Background()
	for _, fail := range []bool{false, true} {
		be, err := local.Create(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		w, written := Watch(be)
		for _, h := range []backend.Handle{{Type: backend.SnapshotFile, Name: "s1"}, {Type: backend.SnapshotFile, Name: "s2"}, {Type: backend.LockFile, Name: "l1"}} {
			if err := w.Save(ctx, h, bytes.NewReader([]byte("x")), 1); err != nil {
				t.Fatal(err)
			}
		}
		var calls []string
		gateErr := errors.New("audit refuses writes")
		written.BeforeRemove(func(_ context.Context, first backend.Handle) error {
			calls = append(calls, first.String())
			if fail {
				return gateErr
			}
			return nil
		})
		if err := w.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: "l1"}); err != nil {
			t.Fatalf("removing a lock: %v", err)
		}
		if len(calls) != 0 {
			t.Fatalf("the gate ran for a lock: %v", calls)
		}
		for _, name := range []string{"s1", "s2"} {
			err := w.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: name})
			if fail != errors.Is(err, gateErr) {
				t.Fatalf("fail=%v: removing %s: %v", fail, name, err)
			}
		}
		if len(calls) != 1 || calls[0] != "snapshots/s1" {
			t.Fatalf("fail=%v: gate calls %v, want one, before snapshots/s1", fail, calls)
		}
		var left int
		be.List(ctx, backend.SnapshotFile, func(backend.FileInfo) error { left++; return nil })
		if want := map[bool]int{false: 0, true: 2}[fail]; left != want {
			t.Errorf("fail=%v: %d snapshots left, want %d", fail, left, want)
		}
	}
}
