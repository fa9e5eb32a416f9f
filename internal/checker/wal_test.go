package checker

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// flipWAL flips a byte in the middle of WAL object name of be.
func flipWAL(t *testing.T, be backend.Backend, name string) {
	t.Helper()
	ctx := context.Background()
	h := backend.Handle{Type: backend.WALFile, Name: name}
	rd, err := be.Load(ctx, h, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rd)
	rd.Close()
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// TestReadDataReadsEveryWALObject: WAL objects that no base backup's span
// holds (here: there is no base backup at all) are read back too, with
// --read-data and with a percentage, and a damaged one is a problem
// naming it; without --read-data none is read.
func TestReadDataReadsEveryWALObject(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	repo := repotest.New(t, repotest.Backend(be))
	names := []string{"00000002.history", "000000010000000000000010", "000000010000000000000011", "000000010000000000000011.partial"}
	for i, n := range names {
		if err := repo.SaveNamed(ctx, backend.WALFile, n, bytes.Repeat([]byte{byte(i)}, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	run := func(o Options) *Report {
		t.Helper()
		rep, err := New(repo, o).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if r := run(Options{ReadData: true}); !r.OK() || r.WALObjects != len(names) || r.WALRead != len(names) || r.WALDamaged != 0 {
		t.Fatalf("undamaged: %+v", r)
	}

	flipWAL(t, be, names[1])
	flipWAL(t, be, names[0])
	if r := run(Options{}); !r.OK() || r.WALRead != 0 || r.WALObjects != len(names) {
		t.Errorf("without --read-data, WAL objects are only listed: %+v", r)
	}
	r := run(Options{ReadData: true})
	if r.OK() || r.WALRead != len(names) || r.WALDamaged != 2 || len(r.Problems) != 2 {
		t.Fatalf("two damaged WAL objects: %+v", r)
	}
	for _, p := range r.Problems {
		t.Logf("%s: %s", p.Object, p.Error)
		if p.Object != "wal/"+names[0] && p.Object != "wal/"+names[1] || !strings.Contains(p.Error, strings.TrimPrefix(p.Object, "wal/")+" cannot be read") {
			t.Errorf("problem %+v", p)
		}
	}

	// A percentage samples WAL objects as it does packs: a random share,
	// rounded up, at least one; every damaged one read is reported.
	for _, pct := range []float64{1, 50} {
		r := run(Options{ReadData: true, Percent: pct})
		want := max(1, (len(names)*int(pct)+99)/100)
		if r.WALRead != want || r.WALDamaged != len(r.Problems) || r.OK() != (r.WALDamaged == 0) {
			t.Errorf("--read-data %v%%: read %d WAL objects, want %d; %d damaged, problems %+v", pct, r.WALRead, want, r.WALDamaged, r.Problems)
		}
	}
	seen := 0
	for range 40 {
		if !run(Options{ReadData: true, Percent: 1}).OK() {
			seen++
		}
	}
	if seen == 0 {
		t.Errorf("--read-data 1%% never read a damaged WAL object in 40 runs (2 of %d are)", len(names))
	}
}

// TestWALRemovedWhileChecked: a WAL object listed, then removed before it
// is read while a prune runs (its lock record is there: it removes WAL
// that no base backup needs) is not damage: no problem, not counted as
// read or damaged. Removed with no prune seen (by hand: hostile test), it
// is damage.
func TestWALRemovedWhileChecked(t *testing.T) {
	for _, prune := range []bool{true, false} {
		ctx := context.Background()
		be := mem.New()
		repo := repotest.New(t, repotest.Backend(be))
		names := []string{"000000010000000000000010", "000000010000000000000011"}
		for i, n := range names {
			if err := repo.SaveNamed(ctx, backend.WALFile, n, bytes.Repeat([]byte{byte(i)}, 4096)); err != nil {
				t.Fatal(err)
			}
		}
		if prune {
			if err := be.Save(ctx, backend.Handle{Type: backend.LockFile, Name: "0123"}, bytes.NewReader([]byte("x")), 1); err != nil {
				t.Fatal(err)
			}
		}
		read := New(repo, Options{}).opt.ReadWAL
		o := Options{ReadData: true, ReadWAL: func(ctx context.Context, name string, bufs *hugemem.Pool) (int, error) {
			if name == names[0] {
				if err := be.Remove(ctx, backend.Handle{Type: backend.WALFile, Name: name}); err != nil {
					return 0, err
				}
			}
			return read(ctx, name, bufs)
		}}
		r, err := New(repo, o).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case prune && (!r.OK() || r.WALDamaged != 0 || r.WALRead != 1):
			t.Fatalf("a WAL object removed while a prune ran: %+v", r)
		case !prune && (r.OK() || r.WALDamaged != 1 || len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Error, "no prune was seen")):
			t.Fatalf("a WAL object removed by hand while checked: %+v", r)
		}
	}
}
