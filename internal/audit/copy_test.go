package audit

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend/local"
)

// TestCopyEntriesDiverged: the destination of copies witnesses the
// source's log. When the source's newest entries are deleted and the log
// grows again (a rollback, or a history rewritten by someone with the
// passphrase), the next copy finds the entry it carried before changed,
// or the source shorter than its copy: it says so, copies nothing more of
// that log (the destination keeps the history it had, which still
// verifies), and does not mix the two histories.
func TestCopyEntriesDiverged(t *testing.T) {
	ctx := context.Background()
	for _, regrow := range []int{0, 1, 3} {
		f := newFixture(t)
		f.appendN(t, 4, 1)
		dst, err := local.Create(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if n, err := CopyEntries(ctx, f.be, dst, testLogID); n != 4 || err != nil {
			t.Fatalf("first copy: %d, %v", n, err)
		}
		for _, start := range []uint64{2, 3} {
			if err := os.Remove(f.entryPath(start)); err != nil {
				t.Fatal(err)
			}
		}
		f.appendN(t, regrow, 1)
		n, err := CopyEntries(ctx, f.be, dst, testLogID)
		if !errors.Is(err, ErrLogDiverged) || n != 0 || !strings.Contains(err.Error(), "rolled back") {
			t.Errorf("copy after the source's log was cut and grew by %d: %d copied, %v", regrow, n, err)
		}
		rep, err := Verify(ctx, dst, testLogID, VerifyOptions{Verifier: f.v})
		if err != nil || !rep.OK() || rep.Records != 4 {
			t.Errorf("the destination's copy after the refused copy (grown by %d): %v %+v", regrow, err, rep)
		}
	}
	// Copies run both ways: a source that holds an older copy of a log
	// that is not its own is not a rollback.
	{
		f := newFixture(t)
		f.appendN(t, 2, 1)
		older, _ := local.Create(t.TempDir())
		if n, err := CopyEntries(ctx, f.be, older, testLogID); n != 2 || err != nil {
			t.Fatalf("copy: %d, %v", n, err)
		}
		f.appendN(t, 2, 1)
		if n, err := CopyEntries(ctx, older, f.be, "another repository"); n != 0 || err != nil {
			t.Errorf("copy back from a repository holding an older copy of the log: %d, %v", n, err)
		}
	}
	// A source that only grew copies as before.
	f := newFixture(t)
	f.appendN(t, 2, 1)
	dst, _ := local.Create(t.TempDir())
	CopyEntries(ctx, f.be, dst, testLogID)
	f.appendN(t, 2, 1)
	if n, err := CopyEntries(ctx, f.be, dst, testLogID); n != 2 || err != nil {
		t.Errorf("copy of a grown log: %d, %v", n, err)
	}
}
