package audit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Attacks on the log by someone with write access to the storage (and
// an auditor's own mistakes), beyond the detection tests.

// TestVerifyIncrementalWithOlderExported: an incremental verification
// given checkpoints exported before the one it resumes from (an auditor
// passing every file they hold) checks them against the log, and does
// not report them as a rollback.
func TestVerifyIncrementalWithOlderExported(t *testing.T) {
	f := newFixture(t)
	cps := f.appendN(t, 5, 2)
	rep, err := Verify(context.Background(), f.be, testLogID, VerifyOptions{Verifier: f.v, From: cps[3], Exported: []*Checkpoint{cps[0], cps[3], cps[4]}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("incremental verification with older exported checkpoints: %q", rep.Problems)
	}
	// One that the log did not pass through is still found.
	bad := *cps[1]
	bad.Root = cps[0].Root
	rep, err = Verify(context.Background(), f.be, testLogID, VerifyOptions{Verifier: f.v, From: cps[3], Exported: []*Checkpoint{&bad}})
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, "not one the log passed through")
}

// TestVerifyGapThenExported: after a deleted entry, an exported
// checkpoint beyond the gap is a problem in the report (the log cannot
// be shown to pass through it), not a failure to verify.
func TestVerifyGapThenExported(t *testing.T) {
	f := newFixture(t)
	cps := f.appendN(t, 5, 1)
	if err := os.Remove(f.entryPath(1)); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), f.be, testLogID, VerifyOptions{Verifier: f.v, Exported: []*Checkpoint{cps[3]}})
	if err != nil {
		t.Fatalf("Verify failed instead of reporting: %v", err)
	}
	wantProblem(t, rep, "missing")
	if rep.OK() {
		t.Error("a log with a gap verified")
	}
}

// TestPlantedEntries: an entry copied under another position, another
// log's entry renamed into this log, and an entry of another repository
// (same passphrase or not) replayed: all found by verify.
func TestPlantedEntries(t *testing.T) {
	copyEntry := func(t *testing.T, from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("duplicate at the end", func(t *testing.T) {
		f := newFixture(t)
		f.appendN(t, 3, 1)
		copyEntry(t, f.entryPath(1), f.entryPath(3))
		wantProblem(t, f.verify(t), "renamed or copied")
	})
	t.Run("another repository's entry", func(t *testing.T) {
		f := newFixture(t)
		f.appendN(t, 3, 1)
		g := newFixture(t)
		g.appendN(t, 4, 1) // g's log id is the same test id: the worst case
		copyEntry(t, g.entryPath(3), f.entryPath(3))
		rep := f.verify(t)
		if rep.OK() {
			t.Error("another log's entry (same log id, other key) verified")
		}
		// And a writer refuses to build on it.
		if _, err := f.log.Append(context.Background(), rec("backup", 9)); err == nil {
			t.Error("appended after a planted head")
		}
	})
	t.Run("overlap", func(t *testing.T) {
		f := newFixture(t)
		f.appendN(t, 2, 3)
		f.rewrite(t, 3, func(e *entry) {})
		b, _ := os.ReadFile(f.entryPath(3))
		e, _ := decodeEntry(b)
		e.start = 2
		os.WriteFile(f.entryPath(2), e.encode(), 0o400)
		if f.verify(t).OK() {
			t.Error("an overlapping entry verified")
		}
	})
}

// TestSpoolRefusesOthersFiles: a spool directory others may write, or a
// spool file that is a link (planted to make the flush truncate another
// file), is refused: the call is then recorded on its own.
func TestSpoolRefusesOthersFiles(t *testing.T) {
	t.Run("shared dir", func(t *testing.T) {
		dir := t.TempDir()
		os.Chmod(dir, 0o777)
		if err := NewSpool(dir, testLogID).Add(BatchItem{Arg: "x"}); err == nil {
			t.Error("spooled into a directory others may write")
		}
	})
	t.Run("symlinked spool file", func(t *testing.T) {
		dir := t.TempDir()
		victim := filepath.Join(t.TempDir(), "postgresql.conf")
		os.WriteFile(victim, []byte("precious"), 0o600)
		sp := NewSpool(dir, testLogID)
		if err := os.Symlink(victim, sp.Path()); err != nil {
			t.Fatal(err)
		}
		if err := sp.Add(BatchItem{Arg: "x"}); err == nil {
			t.Error("spooled through a symbolic link")
		}
		if _, err := sp.Flush(time.Now(), true, func([]BatchItem) error { return nil }); err == nil {
			t.Error("flushed through a symbolic link")
		}
		if b, _ := os.ReadFile(victim); string(b) != "precious" {
			t.Errorf("the link's target was changed: %q", b)
		}
	})
	t.Run("group-writable spool file", func(t *testing.T) {
		dir := t.TempDir()
		sp := NewSpool(dir, testLogID)
		os.WriteFile(sp.Path(), nil, 0o666)
		os.Chmod(sp.Path(), 0o666)
		if err := sp.Add(BatchItem{Arg: "x"}); err == nil {
			t.Error("spooled into a file others may write")
		}
	})
}

// TestReadShowsCopiedEntryDamaged: 'audit log' (Read) does not show the
// records of an entry copied under another position as if they were
// there: they open (records are bound to the log, not to a position),
// so Read checks the entry's own name.
func TestReadShowsCopiedEntryDamaged(t *testing.T) {
	f := newFixture(t)
	f.appendN(t, 3, 1)
	b, err := os.ReadFile(f.entryPath(0))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(f.entryPath(3), b, 0o400)
	var ok, damaged int
	err = f.log.Read(context.Background(), func(pos uint64, r *Record, err error) error {
		if err != nil {
			damaged++
		} else {
			ok++
		}
		return nil
	})
	if err != nil || ok != 3 || damaged != 1 {
		t.Errorf("Read: %d records, %d damaged, %v; want 3 and 1", ok, damaged, err)
	}
}

// TestVerifyTruncatedEntry: an entry truncated in the middle of the log
// is reported as damaged, and the records after it are not said to have
// been deleted.
func TestVerifyTruncatedEntry(t *testing.T) {
	f := newFixture(t)
	f.appendN(t, 4, 2)
	p := f.entryPath(2)
	os.Chmod(p, 0o600)
	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}
	rep := f.verify(t)
	wantProblem(t, rep, "malformed")
	wantProblem(t, rep, "in the damaged entry above")
}

// TestSpoolAfterTornLine: a line torn by a crash or a full disk does not
// take the next call's item with it.
func TestSpoolAfterTornLine(t *testing.T) {
	sp := NewSpool(t.TempDir(), testLogID)
	now := time.Now()
	if err := sp.Add(BatchItem{Time: now, Arg: "first"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(sp.Path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2026-12-05T`) // torn
	f.Close()
	if err := sp.Add(BatchItem{Time: now, Arg: "after"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	if _, err := sp.Flush(now, true, func(items []BatchItem) error {
		for _, it := range items {
			got = append(got, it.Arg)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1] != "after" {
		t.Errorf("flushed %q, want first and after", got)
	}
}

// TestVerifyGapReportedOnce: a deleted entry is one problem, not one
// for every entry after it.
func TestVerifyGapReportedOnce(t *testing.T) {
	for _, del := range []uint64{0, 2} {
		f := newFixture(t)
		f.appendN(t, 6, 1)
		if err := os.Remove(f.entryPath(del)); err != nil {
			t.Fatal(err)
		}
		rep := f.verify(t)
		if len(rep.Problems) != 1 {
			t.Errorf("entry %d deleted: %d problems, want 1: %q", del, len(rep.Problems), rep.Problems)
		}
	}
}

// TestVerifyAcrossBatches: entries read in batches (3 here) and checked in
// order while the next batch is read give the same report: a gap and a
// damaged newest entry each found once, every other entry checked, and
// the newest checkpoint that of the last entry that checks.
func TestVerifyAcrossBatches(t *testing.T) {
	defer func(n int) { readBatch = n }(readBatch)
	readBatch = 3
	f := newFixture(t)
	cps := f.appendN(t, 10, 2)
	if rep := f.verify(t); !rep.OK() || rep.Entries != 10 || rep.Records != 20 || rep.Newest.Size != 20 {
		t.Fatalf("intact log: %d entries, %d records, problems %q", rep.Entries, rep.Records, rep.Problems)
	}
	if err := os.Remove(f.entryPath(8)); err != nil {
		t.Fatal(err)
	}
	p := f.entryPath(18)
	os.Chmod(p, 0o600)
	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}
	rep := f.verify(t, cps[2])
	if len(rep.Problems) != 2 {
		t.Errorf("%d problems, want 2 (the gap, the damaged entry): %q", len(rep.Problems), rep.Problems)
	}
	wantProblem(t, rep, "records 8 to 9 are missing")
	wantProblem(t, rep, "malformed")
	if rep.Entries != 8 || rep.Newest == nil || rep.Newest.Size != 18 {
		t.Errorf("%d entries checked, newest %+v; want 8, and the checkpoint of size 18", rep.Entries, rep.Newest)
	}
}
