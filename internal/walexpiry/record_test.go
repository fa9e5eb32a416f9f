package walexpiry

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// TestRecords: a record is written only when it moves a system's
// boundary on, and the highest boundary of each system holds, whatever
// the order the records were written in.
func TestRecords(t *testing.T) {
	ctx := context.Background()
	r := repotest.New(t)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	save := func(bs ...Boundary) *Record {
		t.Helper()
		rec, err := Save(ctx, r, now, bs)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	if rec := save(Boundary{1, "000000010000000000000008"}, Boundary{2, "000000020000000100000000"}); rec == nil || len(rec.Systems) != 2 {
		t.Fatalf("first record: %+v", rec)
	}
	// Lower or equal, on another timeline too: nothing written.
	if rec := save(Boundary{1, "000000020000000000000008"}, Boundary{2, "0000000200000000000000FF"}); rec != nil {
		t.Fatalf("a record that moves nothing on: %+v", rec)
	}
	if rec := save(Boundary{1, "000000010000000000000009"}, Boundary{2, "000000020000000100000000"}); rec == nil || len(rec.Systems) != 1 || rec.Systems[0].SystemID != 1 {
		t.Fatalf("a record that moves system 1 on: %+v", rec)
	}
	recs, f, damaged, err := Records(ctx, r)
	if err != nil || len(recs) != 2 || len(damaged) != 0 || len(f) != 2 || f[1] != "000000010000000000000009" || f[2] != "000000020000000100000000" {
		t.Fatalf("Records: %v, %d records, floors %v, damaged %v", err, len(recs), f, damaged)
	}
	if n := 0; r.Backend().List(ctx, backend.ExpiryFile, func(backend.FileInfo) error { n++; return nil }) != nil || n != 2 {
		t.Fatalf("%d objects under expiry/, want 2", n)
	}
	if _, err := Save(ctx, r, now, []Boundary{{3, "000000010000000000000008.partial"}}); err == nil {
		t.Error("a boundary that is not a segment name was recorded")
	}
}

func TestForCopy(t *testing.T) {
	seg := func(no int) string { return fmt.Sprintf("00000001000000000000%04X", no) }
	src := Floors{1: seg(8), 2: seg(30)}
	set := func(nos ...int) map[string]bool {
		m := map[string]bool{"00000002.history": true}
		for _, no := range nos {
			m[seg(no)] = true
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		have, dst map[string]bool
		want      []string // the systems' boundaries kept, in order
	}{
		{"the destination lacks what the source expired", set(8, 9), set(8), []string{seg(8), seg(30)}},
		{"an empty destination", set(8, 9), set(), []string{seg(8), seg(30)}},
		// Segments do not say their system: one the destination keeps
		// below a boundary leaves that system's boundary out, whichever
		// system it is of (the destination then checks more, never less).
		{"the destination keeps WAL the source expired", set(8, 9), set(5, 8), nil},
		{"WAL the source lacks between the boundaries", set(8), set(8, 9), []string{seg(8)}},
		{"WAL the source lacks above every boundary", set(8), set(8, 31), []string{seg(8), seg(30)}},
	} {
		var got []string
		for _, b := range ForCopy(src, tc.have, tc.dst) {
			got = append(got, b.From)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
