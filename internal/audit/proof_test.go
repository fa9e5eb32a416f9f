package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/compact"
)

// Every record of logs of every size up to 17 has an inclusion proof in
// the newest checkpoint, and in an older one the records before it; a
// proof of another leaf, position or checkpoint fails.
func TestInclusionProofs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	var cps []*Checkpoint
	for n := 1; n <= 17; n++ {
		cps = append(cps, f.appendN(t, 1, 1+n%3)...)
	}
	for _, cp := range []*Checkpoint{cps[0], cps[4], cps[len(cps)-1]} {
		var cmds []string
		tr, err := f.log.ReadTree(ctx, cp, func(pos uint64, r *Record, err error) error {
			if err != nil {
				return err
			}
			cmds = append(cmds, r.Command)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(cmds)) != cp.Size {
			t.Fatalf("read %d records up to a checkpoint of %d", len(cmds), cp.Size)
		}
		for pos := range cp.Size {
			p, err := tr.Prove(pos)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(cp, p); err != nil {
				t.Errorf("size %d, record %d: %v", cp.Size, pos, err)
			}
			if cp.Size > 1 {
				bad := *p
				bad.Position = (pos + 1) % cp.Size
				if err := VerifyInclusion(cp, &bad); err == nil {
					t.Errorf("size %d: the proof of %d passes for %d", cp.Size, pos, bad.Position)
				}
			}
			bad := *p
			bad.LeafHash = strings.Repeat("00", 32)
			if err := VerifyInclusion(cp, &bad); err == nil {
				t.Errorf("size %d, record %d: a forged leaf passes", cp.Size, pos)
			}
		}
	}
	// A proof against a checkpoint whose root is not the tree's.
	if _, err := NewTree(cps[1], nil); err == nil {
		t.Error("a tree without leaves for a non-empty checkpoint")
	}
}

// rootOf and hashChildren, Verify's hashing without allocations, give what
// the RFC 6962 hasher and compact.Range.GetRootHash give.
func TestRootOfMatchesGetRootHash(t *testing.T) {
	slow := &compact.RangeFactory{Hash: hasher.HashChildren}
	want := slow.NewEmptyRange(0)
	got := rangeFactory.NewEmptyRange(0)
	for i := range 300 {
		lh := leafHash([]byte{byte(i), byte(i >> 8)})
		if err := want.Append(lh, nil); err != nil {
			t.Fatal(err)
		}
		if err := got.Append(lh, nil); err != nil {
			t.Fatal(err)
		}
		root, err := want.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		if r := rootOf(got.Hashes()); !bytes.Equal(r[:], root) {
			t.Fatalf("size %d: rootOf %x, GetRootHash %x", i+1, r, root)
		}
	}
	if l, r := []byte("short"), leafHash(nil); !bytes.Equal(hashChildren(l, r), hasher.HashChildren(l, r)) {
		t.Error("hashChildren of a hash that is not 32 bytes differs from the hasher's")
	}
}

// TestReadTreeAcrossBatches: ReadTree reads as Verify does (batches read
// ahead in parallel, here of 3 entries, or cut short by their bytes) and
// agrees with it and with Read on a log whose entries of 1 to 3 records
// cross several batch boundaries: every record once, in order, opened,
// and the tree of Verify's newest checkpoint (or of an older one, read no
// further). A damaged, missing or overlong entry is still an error naming
// it, after the records before it and none after; a record that does not
// open is passed to fn, as before.
func TestReadTreeAcrossBatches(t *testing.T) {
	defer func(n int, b int64) { readBatch, readBatchBytes = n, b }(readBatch, readBatchBytes)
	ctx := context.Background()
	f := newFixture(t)
	var cps []*Checkpoint // after each entry
	pos := 0
	for i := range 11 {
		recs := make([]*Record, 1+i%3)
		for j := range recs {
			recs[j] = rec(fmt.Sprintf("cmd%d", pos), pos)
			pos++
		}
		cp, err := f.log.Append(ctx, recs...)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	// read returns the positions ReadTree passes to fn (each record's
	// own, checked) and the error of a record that does not open.
	read := func(l *Log, cp *Checkpoint) (*Tree, []uint64, []error, error) {
		var got []uint64
		var bad []error
		tr, err := l.ReadTree(ctx, cp, func(p uint64, r *Record, err error) error {
			got = append(got, p)
			switch {
			case err != nil:
				bad = append(bad, err)
			case r.Command != fmt.Sprintf("cmd%d", p) || r.Args[0] != fmt.Sprint(p):
				t.Errorf("record %d is %s %q", p, r.Command, r.Args)
			}
			return nil
		})
		return tr, got, bad, err
	}
	inOrder := func(got []uint64, n uint64) bool {
		if uint64(len(got)) != n {
			return false
		}
		for i, p := range got {
			if p != uint64(i) {
				return false
			}
		}
		return true
	}
	var fromRead []uint64
	if err := f.log.Read(ctx, func(p uint64, _ *Record, err error) error {
		fromRead = append(fromRead, p)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		entries int
		bytes   int64
	}{{3, 64 << 20}, {4096, 1}, {2, 3000}} {
		readBatch, readBatchBytes = b.entries, b.bytes
		rep := f.verify(t)
		if !rep.OK() || rep.Entries != 11 || rep.Records != uint64(pos) || !bytes.Equal(rep.Newest.Note, cps[10].Note) {
			t.Fatalf("batches of %d entries, %d bytes: verify: %d entries, %d records, problems %q", b.entries, b.bytes, rep.Entries, rep.Records, rep.Problems)
		}
		tr, got, bad, err := read(f.log, rep.Newest)
		if err != nil || len(bad) > 0 || !inOrder(got, rep.Records) || !slices.Equal(got, fromRead) {
			t.Fatalf("batches of %d entries, %d bytes: ReadTree passed %v (Read %v), records not opening %v: %v", b.entries, b.bytes, got, fromRead, bad, err)
		}
		for p := range rep.Records {
			pr, err := tr.Prove(p)
			if err == nil {
				err = VerifyInclusion(rep.Newest, pr)
			}
			if err != nil {
				t.Fatalf("batches of %d entries, %d bytes: record %d: %v", b.entries, b.bytes, p, err)
			}
		}
		// An older checkpoint: its records, and none after.
		if _, got, _, err := read(f.log, cps[6]); err != nil || !inOrder(got, cps[6].Size) {
			t.Fatalf("batches of %d entries, %d bytes: up to the checkpoint of size %d: %v, %v", b.entries, b.bytes, cps[6].Size, got, err)
		}
	}
	readBatch, readBatchBytes = 3, 64<<20

	// Records that do not open (another repository's key): each passed
	// to fn as its error; the tree is of the stored bytes, so it stands.
	other := newFixture(t)
	if _, got, bad, err := read(New(f.be, other.log.key, testLogID), cps[10]); err != nil || len(bad) != pos || !inOrder(got, uint64(pos)) {
		t.Fatalf("under another key: %d records, %d not opening: %v", len(got), len(bad), err)
	} else if !strings.Contains(bad[0].Error(), "record 0: audit record does not open") {
		t.Errorf("a record that does not open: %v", bad[0])
	}

	// A checkpoint that ends inside an entry (the third holds records 3
	// to 5).
	inside := &Checkpoint{Origin: cps[10].Origin, Size: 5, Root: cps[10].Root}
	if _, got, _, err := read(f.log, inside); err == nil || !strings.Contains(err.Error(), "ends at 6, past the checkpoint's size 5") || !inOrder(got, 3) {
		t.Errorf("a checkpoint inside an entry: %v after %v", err, got)
	}

	// Damaged: the eighth entry (records 13 and 14, in the third batch)
	// truncated; then missing.
	p := f.entryPath(13)
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o600)
	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}
	if _, got, _, err := read(f.log, cps[10]); err == nil || !strings.Contains(err.Error(), entryName(testLogID, 13)+": malformed") ||
		!strings.Contains(err.Error(), "run 'nestguard audit verify'") || !inOrder(got, 13) {
		t.Errorf("a damaged entry: %v after %v", err, got)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, got, _, err := read(f.log, cps[10]); err == nil || !strings.Contains(err.Error(), entryName(testLogID, 15)+" starts at 15, not where the entry before ends (13)") || !inOrder(got, 13) {
		t.Errorf("a missing entry: %v after %v", err, got)
	}
	// The newest entry missing: ReadTree up to it finds fewer records.
	if err := os.WriteFile(p, orig, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := read(f.log, cps[10]); err != nil {
		t.Fatalf("the eighth entry put back: %v", err)
	}
	if err := os.Remove(f.entryPath(cps[9].Size)); err != nil {
		t.Fatal(err)
	}
	if _, got, _, err := read(f.log, cps[10]); err == nil || !strings.Contains(err.Error(), "has 19 records up to the checkpoint of size 21") || !inOrder(got, 19) {
		t.Errorf("the newest entry missing: %v after %v", err, got)
	}
}
