package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
)

// readLines is what Read (or read) passes to fn, one line a call: a record's position,
// command and arguments, or its error.
func readLines(t *testing.T, read func(fn func(pos uint64, r *Record, err error) error) error) []string {
	t.Helper()
	var lines []string
	err := read(func(pos uint64, r *Record, err error) error {
		if err != nil {
			lines = append(lines, fmt.Sprintf("%d: error %v", pos, err))
		} else {
			lines = append(lines, fmt.Sprintf("%d: %s %q", pos, r.Command, r.Args))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestVerifyReadDetectsTampering: the one pass of a compliance report
// (VerifyRead) finds every tampering that Verify finds, reported in the
// same words, and passes to fn what Read passes (the report falls back
// to those records, proving nothing); on an intact log it gives the tree
// of the newest checkpoint, as ReadTree does. Each case in batches of the
// default size and of 2 entries, so that the tampered entries fall at
// batch boundaries too.
func TestVerifyReadDetectsTampering(t *testing.T) {
	defer func(n int) { readBatch = n }(readBatch)
	ctx := context.Background()
	const n = 6 // entries of one record each, but where a case says
	cases := []struct {
		name string
		per  int // records per entry
		// tamper changes the log, and returns the checkpoints an
		// auditor exported (of cps, those after each entry).
		tamper func(t *testing.T, f *fixture, cps []*Checkpoint) []*Checkpoint
		want   string // in a problem Verify reports
	}{
		{"modified record", 2, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			f.rewrite(t, 2, func(e *entry) { e.records[1][20] ^= 1 })
			return nil
		}, "a record was modified"},
		{"modified before an exported checkpoint", 2, func(t *testing.T, f *fixture, cps []*Checkpoint) []*Checkpoint {
			f.rewrite(t, 2, func(e *entry) { e.records[1][20] ^= 1 })
			return cps[3:4]
		}, "the log was rewritten"},
		{"record deleted inside an entry", 2, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			f.rewrite(t, 2, func(e *entry) { e.records = e.records[1:] })
			return nil
		}, "its checkpoint is of"},
		{"entry deleted", 2, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			if err := os.Remove(f.entryPath(2)); err != nil {
				t.Fatal(err)
			}
			return nil
		}, "records 2 to 3 are missing"},
		{"reordered within an entry", 3, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			f.rewrite(t, 3, func(e *entry) { e.records[0], e.records[2] = e.records[2], e.records[0] })
			return nil
		}, "reordered"},
		{"entries swapped", 1, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			f.swapEntries(t, 1, 2)
			return nil
		}, "its checkpoint is of"},
		{"forged newest entry", 1, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			head, err := f.log.head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e := f.forge(t, forgerSigner(t), head, rec("restore", 99))
			if err := os.WriteFile(f.entryPath(e.start), e.encode(), 0o400); err != nil {
				t.Fatal(err)
			}
			return nil
		}, "not signed by the audit key"},
		{"forged entry in the middle", 1, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			b0, _ := os.ReadFile(f.entryPath(0))
			e0, err := decodeEntry(b0)
			if err != nil {
				t.Fatal(err)
			}
			e1 := f.forge(t, forgerSigner(t), e0, rec("restore", 99))
			f.rewrite(t, 1, func(e *entry) { *e = *e1 })
			return nil
		}, "audit/" + entryName(testLogID, 2) + ": its signed checkpoint"},
		{"unsigned newest entry", 1, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			f.rewrite(t, n-1, func(e *entry) {
				text, _, _ := bytes.Cut(e.note, []byte("\n\n"))
				e.note = append(text, "\n\n"...)
			})
			return nil
		}, entryName(testLogID, n-1)},
		{"entry truncated", 2, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			os.Chmod(f.entryPath(4), 0o600)
			if err := os.Truncate(f.entryPath(4), 100); err != nil {
				t.Fatal(err)
			}
			return nil
		}, "malformed"},
		{"entry copied to the end", 1, func(t *testing.T, f *fixture, _ []*Checkpoint) []*Checkpoint {
			b, _ := os.ReadFile(f.entryPath(1))
			if err := os.WriteFile(f.entryPath(n), b, 0o400); err != nil {
				t.Fatal(err)
			}
			return nil
		}, "renamed or copied"},
		{"rollback against an exported checkpoint", 1, func(t *testing.T, f *fixture, cps []*Checkpoint) []*Checkpoint {
			for s := uint64(3); s < n; s++ {
				if err := os.Remove(f.entryPath(s)); err != nil {
					t.Fatal(err)
				}
			}
			return cps[4:5]
		}, "ahead of the log"},
	}
	for _, batch := range []int{readBatch, 2} {
		readBatch = batch
		t.Run(fmt.Sprintf("intact, batches of %d", batch), func(t *testing.T) {
			f := newFixture(t)
			cps := f.appendN(t, n, 2)
			want := f.verify(t, cps[2])
			fromRead := readLines(t, func(fn func(uint64, *Record, error) error) error { return f.log.Read(ctx, fn) })
			var rep *Report
			var tree *Tree
			got := readLines(t, func(fn func(uint64, *Record, error) error) (err error) {
				rep, tree, err = f.log.VerifyRead(ctx, VerifyOptions{Verifier: f.v, Exported: cps[2:3]}, fn)
				return err
			})
			if !rep.OK() || rep.Records != want.Records || rep.Entries != want.Entries || !bytes.Equal(rep.Newest.Note, cps[n-1].Note) {
				t.Fatalf("VerifyRead of an intact log: %d records, %d entries, problems %q", rep.Records, rep.Entries, rep.Problems)
			}
			if !slices.Equal(got, fromRead) {
				t.Errorf("VerifyRead passed %q, Read %q", got, fromRead)
			}
			if tree == nil || !bytes.Equal(tree.Checkpoint().Note, rep.Newest.Note) {
				t.Fatal("no tree of the newest checkpoint")
			}
			for p := range rep.Records {
				pr, err := tree.Prove(p)
				if err == nil {
					err = VerifyInclusion(rep.Newest, pr)
				}
				if err != nil {
					t.Fatalf("record %d: %v", p, err)
				}
			}
			// An error from fn stops the pass and is returned.
			stop := errors.New("stop")
			if _, _, err := f.log.VerifyRead(ctx, VerifyOptions{Verifier: f.v}, func(uint64, *Record, error) error { return stop }); !errors.Is(err, stop) {
				t.Errorf("fn's error: VerifyRead returned %v", err)
			}
			if _, _, err := f.log.VerifyRead(ctx, VerifyOptions{Verifier: f.v, From: cps[2]}, func(uint64, *Record, error) error { return nil }); err == nil {
				t.Error("VerifyRead from a checkpoint: no error")
			}
		})
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s, batches of %d", c.name, batch), func(t *testing.T) {
				f := newFixture(t)
				exported := c.tamper(t, f, f.appendN(t, n, c.per))
				want := f.verify(t, exported...)
				if want.OK() {
					t.Fatal("Verify found nothing")
				}
				wantProblem(t, want, c.want)
				fromRead := readLines(t, func(fn func(uint64, *Record, error) error) error { return f.log.Read(ctx, fn) })
				var rep *Report
				var tree *Tree
				got := readLines(t, func(fn func(uint64, *Record, error) error) (err error) {
					rep, tree, err = f.log.VerifyRead(ctx, VerifyOptions{Verifier: f.v, Exported: exported}, fn)
					return err
				})
				if !slices.Equal(rep.Problems, want.Problems) {
					t.Errorf("VerifyRead found %q, Verify %q", rep.Problems, want.Problems)
				}
				if rep.Entries != want.Entries || rep.Records != want.Records || (rep.Newest == nil) != (want.Newest == nil) ||
					(rep.Newest != nil && !bytes.Equal(rep.Newest.Note, want.Newest.Note)) {
					t.Errorf("VerifyRead: %d entries, %d records, newest %v; Verify: %d, %d, %v", rep.Entries, rep.Records, rep.Newest, want.Entries, want.Records, want.Newest)
				}
				if tree != nil {
					t.Error("a tree of a log that does not verify")
				}
				if !slices.Equal(got, fromRead) {
					t.Errorf("VerifyRead passed %q, Read %q", got, fromRead)
				}
			})
		}
	}
}
