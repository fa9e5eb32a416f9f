package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/crypto"
)

const testLogID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type fixture struct {
	dir string
	be  backend.Backend
	log *Log
	v   note.Verifier
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := crypto.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := mk.AuditKey()
	if err != nil {
		t.Fatal(err)
	}
	mk.Close()
	t.Cleanup(k.Close)
	f := &fixture{dir: dir, be: be, log: New(be, k, testLogID)}
	vkey, err := f.log.Verifier(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f.v, err = ParseVerifier(vkey); err != nil {
		t.Fatal(err)
	}
	return f
}

func rec(cmd string, i int) *Record {
	return &Record{Time: time.Date(2026, 12, 5, 9, 0, i, 0, time.UTC), User: "alice", Host: "db1",
		Command: cmd, Repository: "/srv/backup", Args: []string{fmt.Sprint(i)}, Outcome: Success}
}

// appendN appends n entries of per records each and returns the
// checkpoints after each.
func (f *fixture) appendN(t *testing.T, n, per int) []*Checkpoint {
	t.Helper()
	var cps []*Checkpoint
	for i := range n {
		recs := make([]*Record, per)
		for j := range recs {
			recs[j] = rec("backup", i*per+j)
		}
		cp, err := f.log.Append(context.Background(), recs...)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	return cps
}

func (f *fixture) verify(t *testing.T, exported ...*Checkpoint) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), f.be, testLogID, VerifyOptions{Verifier: f.v, Exported: exported})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func wantProblem(t *testing.T, rep *Report, substr string) {
	t.Helper()
	for _, p := range rep.Problems {
		if strings.Contains(p, substr) {
			return
		}
	}
	t.Errorf("no problem mentions %q; problems: %q", substr, rep.Problems)
}

func (f *fixture) entryPath(start uint64) string {
	return filepath.Join(f.dir, string(backend.AuditFile), entryName(testLogID, start))
}

// rewrite replaces a stored entry by what edit makes of it (an attacker
// with write access to the storage, not the audit key).
func (f *fixture) rewrite(t *testing.T, start uint64, edit func(e *entry)) {
	t.Helper()
	p := f.entryPath(start)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	e, err := decodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	edit(e)
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, e.encode(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// forgerSigner is a signing key a forger made of their own, under the
// log's key name.
func forgerSigner(t *testing.T) note.Signer {
	t.Helper()
	skey, _, err := note.GenerateKey(nil, keyName(testLogID))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// forge returns the entry a forger with storage access and the data key,
// but not the audit key, builds after head holding r, signed by signer.
func (f *fixture) forge(t *testing.T, signer note.Signer, head *entry, r *Record) *entry {
	t.Helper()
	forger := *f.log
	forger.signer = signer
	sealed, err := sealRecord(f.log.key, testLogID, r)
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := forger.next(head, [][]byte{sealed}, [][]byte{leafHash(sealed)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// swapEntries swaps the contents of two entries of one record each, and
// the positions they claim.
func (f *fixture) swapEntries(t *testing.T, a, b uint64) {
	t.Helper()
	ba, _ := os.ReadFile(f.entryPath(a))
	bb, _ := os.ReadFile(f.entryPath(b))
	ea, err := decodeEntry(ba)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := decodeEntry(bb)
	if err != nil {
		t.Fatal(err)
	}
	ea.start, eb.start = b, a
	os.Chmod(f.entryPath(a), 0o600)
	os.Chmod(f.entryPath(b), 0o600)
	os.WriteFile(f.entryPath(a), eb.encode(), 0o600)
	os.WriteFile(f.entryPath(b), ea.encode(), 0o600)
}

func TestAppendReadVerify(t *testing.T) {
	f := newFixture(t)
	cps := f.appendN(t, 5, 3)
	if got := cps[4].Size; got != 15 {
		t.Fatalf("size after 5 appends of 3: %d", got)
	}
	rep := f.verify(t, cps[0], cps[2])
	if !rep.OK() || rep.Records != 15 || rep.Entries != 5 || rep.Newest.Size != 15 {
		t.Fatalf("verify: %+v", rep)
	}
	// Incremental: from a checkpoint verified before, only what follows.
	inc, err := Verify(context.Background(), f.be, testLogID, VerifyOptions{Verifier: f.v, From: cps[2]})
	if err != nil || !inc.OK() || inc.Records != 15 || inc.Entries != 2 || inc.Resumed != 9 {
		t.Fatalf("incremental verify: %+v, %v", inc, err)
	}
	var got []string
	err = f.log.Read(context.Background(), func(pos uint64, r *Record, err error) error {
		if err != nil {
			return err
		}
		if r.Args[0] != fmt.Sprint(pos) {
			t.Errorf("record %d says %s", pos, r.Args[0])
		}
		got = append(got, r.Args[0])
		return nil
	})
	if err != nil || len(got) != 15 {
		t.Fatalf("read %d records: %v", len(got), err)
	}
	cp, err := f.log.Checkpoint(context.Background())
	if err != nil || !bytes.Equal(cp.Note, cps[4].Note) {
		t.Fatalf("newest checkpoint %v, %v", cp, err)
	}
	// The exported checkpoint an auditor keeps opens with the verifier.
	if _, err := OpenCheckpoint(cps[4].Note, f.v); err != nil {
		t.Fatal(err)
	}
}

func TestDetectModifiedRecord(t *testing.T) {
	f := newFixture(t)
	f.appendN(t, 3, 2)
	f.rewrite(t, 2, func(e *entry) { e.records[1][20] ^= 1 })
	rep := f.verify(t)
	wantProblem(t, rep, "a record was modified")
	if rep.OK() {
		t.Fatal("a modified record verified")
	}
	// The record no longer opens either.
	var bad int
	f.log.Read(context.Background(), func(_ uint64, _ *Record, err error) error {
		if err != nil {
			bad++
		}
		return nil
	})
	if bad != 1 {
		t.Errorf("%d records fail to open, want 1", bad)
	}
}

func TestDetectDeletedRecord(t *testing.T) {
	t.Run("inside an entry", func(t *testing.T) {
		f := newFixture(t)
		f.appendN(t, 3, 2)
		// Drop the first record of the entry at 2 and move it to
		// start 3: the entry names and checkpoints stay.
		f.rewrite(t, 2, func(e *entry) { e.records = e.records[1:] })
		rep := f.verify(t)
		if rep.OK() {
			t.Fatal("a deleted record verified")
		}
	})
	t.Run("a whole entry", func(t *testing.T) {
		f := newFixture(t)
		f.appendN(t, 3, 2)
		if err := os.Remove(f.entryPath(2)); err != nil {
			t.Fatal(err)
		}
		rep := f.verify(t)
		wantProblem(t, rep, "records 2 to 3 are missing")
	})
}

func TestDetectReorderedRecords(t *testing.T) {
	t.Run("within an entry", func(t *testing.T) {
		f := newFixture(t)
		f.appendN(t, 2, 3)
		f.rewrite(t, 3, func(e *entry) { e.records[0], e.records[2] = e.records[2], e.records[0] })
		wantProblem(t, f.verify(t), "reordered")
	})
	t.Run("entries swapped", func(t *testing.T) {
		f := newFixture(t)
		f.appendN(t, 3, 1)
		// Swap the contents of entries 0 and 1, and the positions
		// they claim.
		f.swapEntries(t, 0, 1)
		rep := f.verify(t)
		if rep.OK() {
			t.Fatal("swapped entries verified")
		}
	})
}

func TestDetectForgedRecord(t *testing.T) {
	f := newFixture(t)
	f.appendN(t, 2, 1)
	// A forger with storage access appends an entry signed by a key of
	// their own under the same key name.
	signer := forgerSigner(t)
	head, err := f.log.head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e := f.forge(t, signer, head, rec("restore", 9)) // even with the data key
	b := e.encode()
	if err := f.be.Save(context.Background(), backend.Handle{Type: backend.AuditFile, Name: entryName(testLogID, 2)}, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, f.verify(t), "not signed by the audit key")
	// Writers refuse to build on it.
	if _, err := f.log.Append(context.Background(), rec("backup", 10)); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("append after a forged head: %v", err)
	}

	t.Run("in the middle", func(t *testing.T) {
		f := newFixture(t)
		f.appendN(t, 3, 1)
		// Entry 1 replaced by a forged record under the forger's key:
		// its own checkpoint is consistent, but the signed newest root
		// no longer is.
		b0, _ := os.ReadFile(f.entryPath(0))
		e0, _ := decodeEntry(b0)
		e1 := f.forge(t, signer, e0, rec("restore", 99))
		f.rewrite(t, 1, func(e *entry) { *e = *e1 })
		rep := f.verify(t)
		wantProblem(t, rep, "audit/"+entryName(testLogID, 2)+": its signed checkpoint")
		// Checking every signature names the forged entry itself.
		rep, err := Verify(context.Background(), f.be, testLogID, VerifyOptions{Verifier: f.v, AllSignatures: true})
		if err != nil {
			t.Fatal(err)
		}
		wantProblem(t, rep, entryName(testLogID, 1)+": checkpoint is not signed by the audit key")
	})

	t.Run("unsigned", func(t *testing.T) {
		f := newFixture(t)
		f.appendN(t, 2, 1)
		f.rewrite(t, 1, func(e *entry) {
			text, _, _ := bytes.Cut(e.note, []byte("\n\n"))
			e.note = append(text, "\n\n"...)
		})
		if f.verify(t).OK() {
			t.Fatal("an unsigned checkpoint verified")
		}
	})
}

func TestDetectRollback(t *testing.T) {
	f := newFixture(t)
	cps := f.appendN(t, 5, 1)
	exported := cps[3] // the auditor exported it at size 4
	// The whole repository is restored from an older copy: the last
	// three entries are gone.
	for _, s := range []uint64{2, 3, 4} {
		if err := os.Remove(f.entryPath(s)); err != nil {
			t.Fatal(err)
		}
	}
	rep := f.verify(t, exported)
	wantProblem(t, rep, "ahead of the log")
	rep, err := Verify(context.Background(), f.be, testLogID, VerifyOptions{Verifier: f.v, From: exported})
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, "rolled back")
	// Without the exported checkpoint the truncated log is consistent:
	// that is why checkpoints are exported.
	if rep := f.verify(t); !rep.OK() {
		t.Errorf("truncated log without an exported checkpoint: %q", rep.Problems)
	}
	// A rewritten history, even of the same length, contradicts it.
	f2 := newFixture(t)
	f2.log.id = testLogID
	f2.appendN(t, 5, 1)
	if rep := f2.verify(t, cps[1]); rep.OK() {
		t.Error("a checkpoint of another history verified")
	}
}

func TestConcurrentWriters(t *testing.T) {
	f := newFixture(t)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each writer has its own Log and backend, as a process would.
			be, err := local.Open(f.dir)
			if err != nil {
				errs <- err
				return
			}
			l := New(be, f.log.key, testLogID)
			for i := range each {
				if _, err := l.Append(context.Background(), rec(fmt.Sprintf("w%d", w), i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep := f.verify(t)
	if !rep.OK() || rep.Records != writers*each {
		t.Fatalf("after concurrent appends: %d records, problems %q", rep.Records, rep.Problems)
	}
}

func TestDecodeEntryRejectsJunk(t *testing.T) {
	f := newFixture(t)
	f.appendN(t, 1, 2)
	b, _ := os.ReadFile(f.entryPath(0))
	for n := range len(b) - 1 {
		// Every truncation is refused or, past the records, a note that
		// does not verify; none panics.
		if e, err := decodeEntry(b[:n]); err == nil {
			if _, err := OpenCheckpoint(e.note, f.v); err == nil {
				t.Fatalf("entry truncated to %d bytes still verifies", n)
			}
		}
	}
}

// TestMissingSigningKey: a log whose key was deleted gets no second key.
func TestMissingSigningKey(t *testing.T) {
	f := newFixture(t)
	f.appendN(t, 2, 1)
	if err := os.Remove(filepath.Join(f.dir, string(backend.AuditFile), signingKeyObject)); err != nil {
		t.Fatal(err)
	}
	l := New(f.be, f.log.key, testLogID)
	if _, err := l.Append(context.Background(), rec("backup", 3)); err == nil || !strings.Contains(err.Error(), "is missing, but the audit log has 2 entries") {
		t.Fatalf("append without the key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, string(backend.AuditFile), signingKeyObject)); err == nil {
		t.Error("a new signing key was stored")
	}
	// StoredVerifier, which creates nothing, says the key was deleted
	// rather than that the log is empty.
	if v, err := l.StoredVerifier(context.Background()); !errors.Is(err, ErrSigningKeyMissing) || v != "" {
		t.Errorf("StoredVerifier without the key: %q, %v", v, err)
	}
}

// TestStoredVerifierEmptyLog: a repository without a key and without
// entries has no log yet: no key and no error.
func TestStoredVerifierEmptyLog(t *testing.T) {
	f := newFixture(t)
	if err := os.Remove(filepath.Join(f.dir, string(backend.AuditFile), signingKeyObject)); err != nil {
		t.Fatal(err)
	}
	l := New(f.be, f.log.key, testLogID)
	if v, err := l.StoredVerifier(context.Background()); err != nil || v != "" {
		t.Errorf("StoredVerifier of an empty log: %q, %v", v, err)
	}
}

// TestRecordArgumentBytes: an argument that is not valid UTF-8 (a path in
// another encoding) comes back from a sealed record byte for byte, and the
// stored JSON carries its escaped form and exact bytes.
func TestRecordArgumentBytes(t *testing.T) {
	f := newFixture(t)
	r := &Record{Time: time.Unix(1, 0).UTC(), Command: "backup", Outcome: Success, Args: []string{"/d/Stra\xdfe", "/plain"}}
	sealed, err := sealRecord(f.log.key, testLogID, r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := openRecord(f.log.key, testLogID, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Args, r.Args) {
		t.Fatalf("args %q, want %q", back.Args, r.Args)
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"args_bytes"`)) || !utf8.Valid(js) {
		t.Fatalf("stored JSON %s", js)
	}
	var forged Record
	if err := json.Unmarshal([]byte(`{"args":["/a"],"args_bytes":["L2I="]}`), &forged); err == nil {
		t.Fatal("args_bytes that do not match args were accepted")
	}
}

// TestStartedRecord: a Started record, with what the command is about to
// remove, and the outcome record naming it, append and read back.
func TestStartedRecord(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	start := rec("forget", 1)
	start.Outcome, start.Intent = Started, []string{"-snapshots/s1", "-snapshots/s2"}
	cp, err := f.log.Append(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	pos := cp.Size - 1
	end := rec("forget", 1)
	end.IntentRecord = &pos
	if _, err := f.log.Append(ctx, end); err != nil {
		t.Fatal(err)
	}
	var got []*Record
	if err := f.log.Read(ctx, func(_ uint64, r *Record, err error) error {
		if err != nil {
			return err
		}
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Outcome != Started || fmt.Sprint(got[0].Intent) != "[-snapshots/s1 -snapshots/s2]" ||
		got[1].IntentRecord == nil || *got[1].IntentRecord != pos {
		t.Fatalf("read back %+v", got)
	}
}

// TestSigningKeyDamaged (hostile s46 F18): a damaged audit/key is
// refused with the same advice as a deleted one: restore it from a copy;
// the verifier key still checks the log.
func TestSigningKeyDamaged(t *testing.T) {
	f := newFixture(t)
	f.appendN(t, 1, 1)
	p := filepath.Join(f.dir, string(backend.AuditFile), signingKeyObject)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(f.be, f.log.key, testLogID).Append(context.Background(), rec("backup", 9))
	if err == nil || !strings.Contains(err.Error(), "audit/key is damaged") || !strings.Contains(err.Error(), "Restore audit/key from a copy of the storage") ||
		!strings.Contains(err.Error(), "'audit verify --key'") {
		t.Fatalf("append with a damaged audit/key: %v", err)
	}
	if rep := f.verify(t); len(rep.Problems) > 0 {
		t.Errorf("the verifier key no longer checks the log: %q", rep.Problems)
	}
}
