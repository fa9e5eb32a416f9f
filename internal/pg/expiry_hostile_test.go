package pg

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/walexpiry"
)

// Hostile tests of verify's archive check with WAL expiry records.

func segName(tli uint32, no uint64) string {
	return Segment{TLI: tli, No: no}.Name(pgmeta.DefaultSegmentSize)
}

// expire records boundary from for system sys, as prune does first.
func (w *walWorld) expire(sys uint64, from string) {
	w.t.Helper()
	if _, err := walexpiry.Save(w.ctx, w.repo, w.at(60), []walexpiry.Boundary{{SystemID: sys, From: from}}); err != nil {
		w.t.Fatal(err)
	}
}

// remove deletes WAL objects, as prune or a hostile hand does.
func (w *walWorld) remove(names ...string) {
	w.t.Helper()
	for _, n := range names {
		if err := w.be.Remove(w.ctx, backend.Handle{Type: backend.WALFile, Name: n}); err != nil {
			w.t.Fatal(err)
		}
	}
}

// damage is ArchiveDamage's objects, and its problems.
func (w *walWorld) damage() ([]string, []ArchiveProblem) {
	w.t.Helper()
	ds, err := w.status().ArchiveDamage(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.Object)
	}
	return got, ds
}

// segmentsOf is segments for system sys (fakeSegment writes system 7).
func (w *walWorld) segmentsOf(sys uint64, tli uint32, first, last uint64) {
	w.t.Helper()
	for no := first; no <= last; no++ {
		name := segName(tli, no)
		at := w.at(float64(no))
		page := fakeSegment(tli, no, at.Add(-20*time.Second), uint32(1000+no))
		binary.LittleEndian.PutUint64(page[24:], sys)
		if err := w.repo.SaveNamed(w.ctx, backend.WALFile, name, page); err != nil {
			w.t.Fatal(err)
		}
		w.be.times[name] = at
	}
}

// A record whose boundary is beyond every WAL object: the base backup
// prune kept the WAL for is forgotten since (or the record is forged,
// docs/security.md). WAL missing below the boundary is what the record
// says prune may have removed, after the newest base backup too; WAL
// missing at or after it is damage.
func TestArchiveDamageBoundaryBeyondWAL(t *testing.T) {
	w := newWALWorld(t)
	w.segments(1, 1, 15, 0)
	w.segments(1, 17, 20, 0)
	w.backup(1, seg(3)+0x28, seg(3)+0x1000, 3.5)
	w.backup(1, seg(8)+0x28, seg(8)+0x1000, 8.5)
	w.expire(7, segName(1, 0x100))
	if got, ds := w.damage(); len(got) != 0 {
		t.Fatalf("ArchiveDamage with a boundary beyond every WAL object: %+v", ds)
	}
	w.expire(7, segName(1, 16)) // a lower record changes nothing: the highest holds
	if got, ds := w.damage(); len(got) != 0 {
		t.Fatalf("ArchiveDamage with two boundaries: %+v", ds)
	}
}

// prune --keep-pitr kept b1 archive-only and anchored its window at b2
// (boundary 8), removing the WAL between them; then b2 and the later base
// backups are forgotten by id. The WAL after b1, the newest base backup
// now, was removed on purpose: not damage (found by review). A segment
// missing after the boundary still is.
func TestArchiveDamageExpiredAfterNewerForgotten(t *testing.T) {
	w := newWALWorld(t)
	w.segments(1, 3, 3, 0)
	w.segments(1, 8, 20, 0)
	w.backup(1, seg(3)+0x28, seg(3)+0x1000, 3.5)
	w.expire(7, segName(1, 8))
	if got, ds := w.damage(); len(got) != 0 {
		t.Fatalf("WAL expired on purpose reported as damage: %+v", ds)
	}
	w.remove(segName(1, 12))
	if got, _ := w.damage(); !slices.Equal(got, []string{"wal/" + segName(1, 12)}) {
		t.Fatalf("a segment missing after the boundary: %v", got)
	}
}

// A promotion after a prune: the boundary is on timeline 1, the WAL goes
// on on timeline 2. The expired WAL is not reported; a segment lost on
// either timeline of the path after the boundary is.
func TestArchiveDamageExpiryTimelineSwitch(t *testing.T) {
	for _, c := range []struct {
		name    string
		floor   string
		removed []string
		want    []string
	}{
		{"expired before the anchor on timeline 1", segName(1, 8), []string{segName(1, 4), segName(1, 5), segName(1, 6), segName(1, 7)}, nil},
		{"lost on timeline 1 after the boundary", segName(1, 8), []string{segName(1, 4), segName(1, 10)}, []string{"wal/" + segName(1, 10)}},
		{"lost on timeline 2", segName(1, 8), []string{segName(1, 4), segName(2, 16)}, []string{"wal/" + segName(2, 16)}},
		// A second prune, its anchor the base backup on timeline 2,
		// expired the WAL between the archive-only backups and it.
		{"expired up to the anchor on timeline 2", segName(2, 15), []string{segName(1, 9), segName(1, 10), segName(1, 11), segName(2, 12), segName(2, 13)}, nil},
		{"lost on timeline 2 after a boundary on it", segName(2, 15), []string{segName(1, 10), segName(2, 17)}, []string{"wal/" + segName(2, 17)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWALWorld(t)
			w.segments(1, 1, 11, 0)
			w.history(2, "1\t0/C000000\tno recovery target specified\n")
			w.segments(2, 12, 20, 0)
			w.backup(1, seg(3)+0x28, seg(3)+0x1000, 3.5)
			w.backup(1, seg(8)+0x28, seg(8)+0x1000, 8.5)
			w.backup(2, seg(15)+0x28, seg(15)+0x1000, 15.5)
			w.expire(7, c.floor)
			w.remove(c.removed...)
			if got, ds := w.damage(); !slices.Equal(got, c.want) {
				t.Fatalf("ArchiveDamage: %+v, want %v", ds, c.want)
			}
		})
	}
}

// Two database systems in one repository (the second one's WAL after
// the first one's, as after pg_upgrade): each has its own boundary, and
// neither's hides or invents a gap of the other.
func TestArchiveDamageExpiryTwoSystems(t *testing.T) {
	for _, c := range []struct {
		name     string
		floors   map[uint64]string
		removed  []string
		want     []string
		legacyOn string // a gap whose message says no record accounts for it
	}{
		{"both expired", map[uint64]string{7: segName(1, 8), 8: segName(1, 35)}, []string{segName(1, 4), segName(1, 5), segName(1, 33), segName(1, 34)}, nil, ""},
		{"lost in the second after its boundary", map[uint64]string{7: segName(1, 8), 8: segName(1, 35)}, []string{segName(1, 4), segName(1, 33), segName(1, 37)}, []string{"wal/" + segName(1, 37)}, ""},
		{"lost in the first after its boundary", map[uint64]string{7: segName(1, 8), 8: segName(1, 35)}, []string{segName(1, 4), segName(1, 33), segName(1, 11)}, []string{"wal/" + segName(1, 11)}, ""},
		{"the second's expiry not recorded", map[uint64]string{7: segName(1, 8)}, []string{segName(1, 4), segName(1, 33)}, []string{"wal/" + segName(1, 33)}, "wal/" + segName(1, 33)},
		{"a boundary of the first far on", map[uint64]string{7: segName(1, 0x30), 8: segName(1, 35)}, []string{segName(1, 33)}, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWALWorld(t)
			w.segmentsOf(7, 1, 1, 20)
			w.segmentsOf(8, 1, 30, 40)
			w.backup(1, seg(3)+0x28, seg(3)+0x1000, 3.5)
			w.backup(1, seg(8)+0x28, seg(8)+0x1000, 8.5)
			w.backup(1, seg(14)+0x28, seg(14)+0x1000, 14.5)
			w.sysID = 8
			w.backup(1, seg(32)+0x28, seg(32)+0x1000, 32.5)
			w.backup(1, seg(35)+0x28, seg(35)+0x1000, 35.5)
			for sys, f := range c.floors {
				w.expire(sys, f)
			}
			w.remove(c.removed...)
			got, ds := w.damage()
			if !slices.Equal(got, c.want) {
				t.Fatalf("ArchiveDamage: %+v, want %v", ds, c.want)
			}
			for _, d := range ds {
				if legacy := strings.Contains(d.Error, "run that prune again"); legacy != (d.Object == c.legacyOn) {
					t.Errorf("%s: says no record accounts for it: %v:\n%s", d.Object, legacy, d.Error)
				}
			}
		})
	}
}

// An expiry record deleted by hand: the WAL it accounted for is reported
// missing (what else could verify know), and the message names the
// deleted record as a cause and the remedy; so with a record damaged (a
// flipped byte), which is reported itself.
func TestArchiveDamageExpiryRecordGone(t *testing.T) {
	setup := func(t *testing.T) *walWorld {
		w := newWALWorld(t)
		w.segments(1, 1, 20, 0)
		w.backup(1, seg(3)+0x28, seg(3)+0x1000, 3.5)
		w.backup(1, seg(8)+0x28, seg(8)+0x1000, 8.5)
		w.backup(1, seg(14)+0x28, seg(14)+0x1000, 14.5)
		w.expire(7, segName(1, 8))
		w.remove(segName(1, 4), segName(1, 5), segName(1, 6), segName(1, 7))
		if got, ds := w.damage(); len(got) != 0 {
			t.Fatalf("ArchiveDamage after the prune: %+v", ds)
		}
		return w
	}
	expiry := func(w *walWorld) backend.Handle {
		var h backend.Handle
		if err := w.be.List(w.ctx, backend.ExpiryFile, func(fi backend.FileInfo) error {
			h = backend.Handle{Type: backend.ExpiryFile, Name: fi.Name}
			return nil
		}); err != nil || h.Name == "" {
			t.Fatalf("no expiry record: %v", err)
		}
		return h
	}
	t.Run("deleted", func(t *testing.T) {
		w := setup(t)
		if err := w.be.Remove(w.ctx, expiry(w)); err != nil {
			t.Fatal(err)
		}
		got, ds := w.damage()
		if !slices.Equal(got, []string{"wal/" + segName(1, 4)}) || !strings.Contains(ds[0].Error, "expiry/") || !strings.Contains(ds[0].Error, "run that prune again") {
			t.Fatalf("ArchiveDamage with the expiry record deleted: %+v", ds)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		w := setup(t)
		h := expiry(w)
		data, err := backend.ReadAll(w.ctx, w.be, h, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0x10
		if err := w.be.Remove(w.ctx, h); err != nil {
			t.Fatal(err)
		}
		if err := w.be.Save(w.ctx, h, strings.NewReader(string(data)), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		got, ds := w.damage()
		if !slices.Equal(got, []string{h.String(), "wal/" + segName(1, 4)}) || !strings.Contains(ds[0].Error, "which WAL prune removed on purpose is unknown") {
			t.Fatalf("ArchiveDamage with the expiry record damaged: %+v", ds)
		}
	})
}
