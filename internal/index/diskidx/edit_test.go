package diskidx

import (
	"errors"
	"os"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// TestEditAfterOpen changes the file in place after Open, in each of its
// sections, and checks that the table never answers other than the index
// it was built from would: an edited record or tag makes blobs look
// unknown (and the damage is reported, once, and the file moved aside),
// an edit of what Open keeps in memory changes nothing.
func TestEditAfterOpen(t *testing.T) {
	es := genEntries(11, 3000, 800, 40)
	truth := index.NewMap()
	for _, e := range es {
		truth.Add(e)
	}
	var multi id.ID // a blob with other locations
	for _, e := range es {
		if len(truth.Locations(e.ID)) > 2 {
			multi = e.ID
			break
		}
	}
	if multi.IsNull() {
		t.Fatal("no blob in three packs")
	}

	type edit struct {
		name    string
		at      func(tab *Table) int64 // the byte to flip
		bit     byte
		damaged bool                   // the edit must be detected
		forged  func(tab *Table) id.ID // a blob the edit must not make present
	}
	// bucketOfID is the bucket of blob bid; firstRec the offset of its
	// first record.
	bucketOfID := func(tab *Table, bid id.ID) uint64 { return bucketOf(bid[:], tab.h.bits) }
	firstRec := func(tab *Table, bid id.ID) int64 {
		b := bucketOfID(tab, bid)
		off := tab.bucketOff(b)
		for {
			var r [id.Size]byte
			if _, err := tab.f.ReadAt(r[:], off); err != nil {
				t.Fatal(err)
			}
			if id.ID(r) == bid {
				return off
			}
			off += recordSize
		}
	}
	tailOff := func(tab *Table) int64 { return headerSize + int64(tab.h.bucketsLen()) }
	packsOff := func(tab *Table) int64 { return tailOff(tab) + int64(len(tab.fan))*4 }
	edits := []edit{
		{name: "first record's blob ID, last bit", bit: 1, damaged: true,
			at: func(*Table) int64 { return headerSize + id.Size - 1 },
			forged: func(tab *Table) id.ID {
				var r id.ID
				tab.f.ReadAt(r[:], headerSize)
				r[id.Size-1] ^= 1
				return r
			}},
		{name: "a record's blob ID, top bit of its bucket's", bit: 0x80, damaged: true,
			at: func(tab *Table) int64 { return firstRec(tab, es[7].ID) + 4 },
			forged: func(tab *Table) id.ID {
				r := es[7].ID
				r[4] ^= 0x80
				return r
			}},
		{name: "a record's sealed location", bit: 0x10, damaged: true,
			at: func(tab *Table) int64 { return firstRec(tab, es[9].ID) + id.Size + 5 }},
		{name: "a record's pack number", bit: 0x01, damaged: true,
			at: func(tab *Table) int64 { return firstRec(tab, es[9].ID) + id.Size }},
		{name: "another location's blob ID", bit: 1, damaged: true,
			at: func(tab *Table) int64 { return firstRec(tab, multi) + recordSize + id.Size - 1 },
			forged: func(*Table) id.ID {
				r := multi
				r[id.Size-1] ^= 1
				return r
			}},
		{name: "another location's sealed location", bit: 0x04, damaged: true,
			at: func(tab *Table) int64 { return firstRec(tab, multi) + 2*recordSize + id.Size + 3 }},
		{name: "a bucket's tag", bit: 0x40, damaged: true,
			at: func(tab *Table) int64 {
				b := bucketOfID(tab, es[3].ID)
				return tab.bucketOff(b+1) - tagSize + 2
			}},
		{name: "the fanout", bit: 0x01,
			at: func(tab *Table) int64 { return tailOff(tab) + 4*int64(bucketOfID(tab, es[5].ID)) + 4 }},
		{name: "the fanout's end", bit: 0x01,
			at: func(tab *Table) int64 { return packsOff(tab) - 4 }},
		{name: "a pack ID", bit: 0x08,
			at: func(tab *Table) int64 { return packsOff(tab) + id.Size + 3 }},
		{name: "packs by ID", bit: 0x01,
			at: func(tab *Table) int64 { return packsOff(tab) + int64(tab.h.packs)*id.Size }},
		{name: "the header's blob count", bit: 0x01,
			at: func(*Table) int64 { return 8 }},
		{name: "the header's salt", bit: 0x01,
			at: func(*Table) int64 { return 50 }},
	}
	for _, ed := range edits {
		t.Run(ed.name, func(t *testing.T) {
			dir := t.TempDir()
			path := build(t, dir, es, nil)
			tab, err := Open(path, testKey)
			if err != nil {
				t.Fatal(err)
			}
			defer tab.Close()
			var damages atomic.Int32
			tab.OnDamage(func(error) { damages.Add(1) })
			var forged id.ID
			if ed.forged != nil {
				forged = ed.forged(tab)
				if truth.Has(forged) {
					t.Fatal("the forged blob is known")
				}
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			var b [1]byte
			at := ed.at(tab)
			if _, err := f.ReadAt(b[:], at); err != nil {
				t.Fatal(err)
			}
			b[0] ^= ed.bit
			if _, err := f.WriteAt(b[:], at); err != nil {
				t.Fatal(err)
			}
			f.Close()

			if ed.forged != nil {
				if tab.Has(forged) {
					t.Fatalf("blob %s, stored nowhere, is present", forged.Short())
				}
				if _, ok := tab.Lookup(forged); ok {
					t.Fatalf("blob %s, stored nowhere, has a location", forged.Short())
				}
			}
			absent := neverWrong(t, tab, truth, es)
			if !ed.damaged {
				if absent != 0 || tab.Err() != nil {
					t.Fatalf("an edit of what Open keeps in memory changed answers: %d blobs absent, Err %v", absent, tab.Err())
				}
				return
			}
			if absent == 0 {
				t.Fatal("no blob looked absent")
			}
			err = tab.Err()
			var de *damageError
			if !errors.Is(err, ErrDamaged) || !errors.As(err, &de) {
				t.Fatalf("Err = %v, want a damage error", err)
			}
			if n := damages.Load(); n != 1 {
				t.Fatalf("OnDamage called %d times, want once", n)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("the damaged file is still in place: %v", err)
			}
			if _, err := Open(path+".damaged", testKey); !errors.Is(err, ErrDamaged) {
				t.Fatalf("reopening the damaged file: %v, want ErrDamaged", err)
			}
		})
	}
}

// neverWrong checks every answer of tab about the blobs of es, and one
// unknown blob next to each, against truth: a blob may look absent, never
// present when it is not, and a location or list of them given is
// truth's. It returns how many known blobs looked absent.
func neverWrong(t *testing.T, tab *Table, truth *index.Map, es []index.Entry) int {
	t.Helper()
	absent := 0
	for _, e := range es {
		u := e.ID
		u[id.Size-1] ^= 1
		for _, bid := range []id.ID{e.ID, u} {
			want, wok := truth.Lookup(bid)
			got, ok := tab.Lookup(bid)
			if ok && (!wok || got != want) {
				t.Fatalf("Lookup(%s) = %+v, want %+v %v", bid.Short(), got, want, wok)
			}
			if tab.Has(bid) && !wok {
				t.Fatalf("Has(%s) true, want false", bid.Short())
			}
			if ls := tab.AppendLocations(nil, bid); len(ls) > 0 && !slices.Equal(ls, truth.Locations(bid)) {
				t.Fatalf("AppendLocations(%s) = %+v, want %+v", bid.Short(), ls, truth.Locations(bid))
			}
			if wok && !ok && bid == e.ID {
				absent++
			}
		}
	}
	visit := func(first bool) func(e index.Entry) bool {
		return func(e index.Entry) bool {
			ls := truth.Locations(e.ID)
			if first && (len(ls) == 0 || ls[0] != e) || !first && !slices.Contains(ls, e) {
				t.Fatalf("Each or EachLocation visited %+v, which is not so", e)
			}
			return true
		}
	}
	tab.Each(visit(true))
	tab.EachLocation(visit(false))
	return absent
}

// TestEditAfterOpenEach: a bucket that fails its tag stops Each and
// EachLocation, which report that they did not visit every blob.
func TestEditAfterOpenEach(t *testing.T) {
	es := genEntries(12, 2000, 1000, 20)
	path := build(t, t.TempDir(), es, nil)
	tab, err := Open(path, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := int64(headerSize + tab.h.bucketsLen() - tagSize - 1) // in the last record
	if _, err := f.WriteAt([]byte{0xff}, last); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if tab.Each(func(index.Entry) bool { return true }) {
		t.Fatal("Each visited every blob of a damaged file")
	}
	if tab.EachLocation(func(index.Entry) bool { return true }) {
		t.Fatal("EachLocation visited every location of a damaged file")
	}
	if !errors.Is(tab.Err(), ErrDamaged) {
		t.Fatalf("Err = %v, want ErrDamaged", tab.Err())
	}
}

// TestTruncatedAfterOpen: a file cut short after Open makes blobs look
// unknown, with an error.
func TestTruncatedAfterOpen(t *testing.T) {
	es := genEntries(13, 2000, 1000, 20)
	path := build(t, t.TempDir(), es, nil)
	tab, err := Open(path, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	truth := index.NewMap()
	for _, e := range es {
		truth.Add(e)
	}
	if err := os.Truncate(path, headerSize+int64(tab.h.bucketsLen())/2); err != nil {
		t.Fatal(err)
	}
	if neverWrong(t, tab, truth, es) == 0 || tab.Err() == nil {
		t.Fatalf("truncation after Open went unnoticed: Err %v", tab.Err())
	}
}
