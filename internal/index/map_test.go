package index

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
)

func TestBlobTypeString(t *testing.T) {
	for typ, want := range map[BlobType]string{DataBlob: "data", TreeBlob: "tree", 7: "BlobType(7)"} {
		if got := typ.String(); got != want {
			t.Errorf("BlobType(%d).String() = %q, want %q", typ, got, want)
		}
	}
}

func TestMapAddLookup(t *testing.T) {
	r := newRand(2)
	packs := randIDs(r, 5000)
	m := NewMap()
	var want []Entry
	for i := range 100_000 {
		e := randEntry(r, packs[i%len(packs)])
		want = append(want, e)
		m.Add(e)
	}
	if m.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(want))
	}
	for _, e := range want {
		got, ok := m.Lookup(e.ID)
		if !ok || got != e {
			t.Fatalf("Lookup(%s) = %+v, %v; want %+v", e.ID.Short(), got, ok, e)
		}
		if !m.Has(e.ID) {
			t.Fatalf("Has(%s) = false", e.ID.Short())
		}
	}
	for range 1000 {
		bid := randID(r)
		if e, ok := m.Lookup(bid); ok || m.Has(bid) {
			t.Fatalf("unknown blob %s found: %+v", bid.Short(), e)
		}
	}
}

func TestMapEmpty(t *testing.T) {
	m := NewMap()
	if _, ok := m.Lookup(id.ID{}); ok || m.Has(id.ID{}) || m.Len() != 0 || len(m.Packs()) != 0 {
		t.Fatal("empty Map is not empty")
	}
	m.Each(func(Entry) bool { t.Fatal("Each visited an entry of an empty Map"); return false })
	if m.MemoryBytes() <= 0 {
		t.Fatal("MemoryBytes of an empty Map is not positive")
	}
}

func TestMapDuplicateKeepsFirst(t *testing.T) {
	r := newRand(3)
	first := randEntry(r, randID(r))
	second := randEntry(r, randID(r))
	second.ID = first.ID
	m := NewMap()
	m.Add(first)
	m.Add(second)
	if m.Len() != 1 {
		t.Fatalf("Len = %d after adding one blob twice", m.Len())
	}
	if got, _ := m.Lookup(first.ID); got != first {
		t.Fatalf("Lookup = %+v, want the first location %+v", got, first)
	}
	// The second pack is still known, so it is not taken for an orphan.
	if got := m.Packs(); !slices.Equal(got, []id.ID{first.Pack, second.Pack}) {
		t.Fatalf("Packs = %v, want both packs", got)
	}
}

// TestMapLocations: a blob stored in several packs (concurrent backups)
// keeps every location, each with its own type and place, and the same
// pack listed again (by two index objects) adds nothing.
func TestMapLocations(t *testing.T) {
	r := newRand(12)
	packs := randIDs(r, 50)
	m := NewMap()
	want := map[id.ID][]Entry{}
	var order []id.ID
	for i := range 5000 {
		e := randEntry(r, packs[i%len(packs)])
		if i%10 == 3 {
			// Again in up to three other packs.
			for k := range i % 4 {
				d := randEntry(r, packs[(i+1+k)%len(packs)])
				d.ID = e.ID
				want[e.ID] = append(want[e.ID], d)
			}
		}
		want[e.ID] = append([]Entry{e}, want[e.ID]...)
		order = append(order, e.ID)
		for _, l := range want[e.ID] {
			m.Add(l)
			// Listed twice: ignored, even at another offset.
			l.Offset++
			m.Add(l)
		}
	}
	if m.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(want))
	}
	total := 0
	for bid, ls := range want {
		total += len(ls)
		if got := m.Locations(bid); !slices.Equal(got, ls) {
			t.Fatalf("Locations(%s) = %+v, want %+v", bid.Short(), got, ls)
		}
		if got, _ := m.Lookup(bid); got != ls[0] {
			t.Fatalf("Lookup(%s) = %+v, want the first location %+v", bid.Short(), got, ls[0])
		}
	}
	if m.Locations(randID(r)) != nil {
		t.Fatal("Locations of an unknown blob is not nil")
	}
	var got []Entry
	m.EachLocation(func(e Entry) bool { got = append(got, e); return true })
	var wantAll []Entry
	for _, bid := range order {
		wantAll = append(wantAll, want[bid]...)
	}
	if len(got) != total || !slices.Equal(got, wantAll) {
		t.Fatalf("EachLocation visited %d locations, want %d in order", len(got), total)
	}
	n := 0
	m.EachLocation(func(Entry) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("EachLocation went on for %d calls after fn returned false at 10", n)
	}
	// Each still visits every blob once, at its first location.
	n = 0
	m.Each(func(e Entry) bool {
		if e != want[e.ID][0] {
			t.Fatalf("Each gave %+v, want %+v", e, want[e.ID][0])
		}
		n++
		return true
	})
	if n != len(want) {
		t.Fatalf("Each visited %d blobs, want %d", n, len(want))
	}
}

// TestMapSharedPrefix puts every blob in one chain: IDs that agree on the
// bytes used for bucketing must still be told apart.
func TestMapSharedPrefix(t *testing.T) {
	r := newRand(4)
	pack := randID(r)
	m := NewMap()
	var want []Entry
	for range 500 {
		e := randEntry(r, pack)
		copy(e.ID[:8], "samehead")
		want = append(want, e)
		m.Add(e)
	}
	for _, e := range want {
		if got, ok := m.Lookup(e.ID); !ok || got != e {
			t.Fatalf("Lookup(%x) = %+v, %v; want %+v", e.ID, got, ok, e)
		}
	}
}

func TestMapEach(t *testing.T) {
	r := newRand(5)
	packs := randIDs(r, 100)
	m := NewMap()
	want := map[id.ID]Entry{}
	for i := range 10_000 {
		e := randEntry(r, packs[i%len(packs)])
		want[e.ID] = e
		m.Add(e)
	}
	seen := map[id.ID]bool{}
	m.Each(func(e Entry) bool {
		if seen[e.ID] {
			t.Fatalf("Each visited %s twice", e.ID.Short())
		}
		seen[e.ID] = true
		if want[e.ID] != e {
			t.Fatalf("Each gave %+v, want %+v", e, want[e.ID])
		}
		return true
	})
	if len(seen) != len(want) {
		t.Fatalf("Each visited %d of %d entries", len(seen), len(want))
	}
	n := 0
	m.Each(func(Entry) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("Each went on for %d calls after fn returned false at 10", n)
	}
}

func TestMapPacks(t *testing.T) {
	r := newRand(6)
	packs := randIDs(r, 3000)
	m := NewMap()
	for i := range 30_000 {
		m.Add(randEntry(r, packs[i%len(packs)]))
	}
	if got := m.Packs(); !slices.Equal(got, packs) {
		t.Fatalf("Packs returned %d packs, want the %d distinct ones in order", len(got), len(packs))
	}
}

// TestMapGrowth checks after every doubling of the buckets that all blobs
// added so far are still found.
func TestMapGrowth(t *testing.T) {
	r := newRand(7)
	packs := randIDs(r, 1000)
	m := NewMap()
	var want []Entry
	rehashes := 0
	for i := range 150_000 {
		nb := len(m.buckets)
		e := randEntry(r, packs[i%len(packs)])
		want = append(want, e)
		m.Add(e)
		if len(m.buckets) == nb {
			continue
		}
		rehashes++
		for _, e := range want {
			if got, ok := m.Lookup(e.ID); !ok || got != e {
				t.Fatalf("after growing to %d buckets: Lookup(%s) = %+v, %v; want %+v", len(m.buckets), e.ID.Short(), got, ok, e)
			}
		}
	}
	if rehashes < 10 {
		t.Fatalf("only %d rehashes; the test does not exercise growth", rehashes)
	}
	if nb, n := len(m.buckets), m.Len(); nb&(nb-1) != 0 || 2*nb < n {
		t.Fatalf("%d buckets for %d blobs: want a power of two >= %d", nb, n, n/2)
	}
}

func TestMapConcurrent(t *testing.T) {
	const writers, perWriter = 4, 5000
	r := newRand(8)
	sets := make([][]Entry, writers)
	for w := range sets {
		packs := randIDs(r, 50)
		for i := range perWriter {
			sets[w] = append(sets[w], randEntry(r, packs[i%len(packs)]))
		}
	}
	m := NewMap()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for _, e := range sets[w] {
				m.Add(e)
			}
		})
		// A reader per writer, looking up what that writer adds (present or
		// not yet), plus the calls that take the read lock.
		wg.Go(func() {
			for i, e := range sets[w] {
				if got, ok := m.Lookup(e.ID); ok && got != e {
					t.Errorf("Lookup(%s) = %+v, want %+v", e.ID.Short(), got, e)
					return
				}
				if i%1000 == 0 {
					m.Len()
					m.Packs()
					m.MemoryBytes()
					m.Each(func(Entry) bool { return false })
				}
			}
		})
	}
	wg.Wait()
	if m.Len() != writers*perWriter {
		t.Fatalf("Len = %d, want %d", m.Len(), writers*perWriter)
	}
	for _, set := range sets {
		for _, e := range set {
			if got, ok := m.Lookup(e.ID); !ok || got != e {
				t.Fatalf("Lookup(%s) = %+v, %v; want %+v", e.ID.Short(), got, ok, e)
			}
		}
	}
}

// failedBase is a Base whose reads failed: it holds nothing it can
// answer for, and says so (Err).
type failedBase struct{ err error }

func (failedBase) Len() int                                    { return 0 }
func (failedBase) Lookup(id.ID) (Entry, bool)                  { return Entry{}, false }
func (failedBase) AppendLocations(es []Entry, _ id.ID) []Entry { return es }
func (failedBase) Has(id.ID) bool                              { return false }
func (failedBase) Each(func(Entry) bool) bool                  { return true }
func (failedBase) EachLocation(func(Entry) bool) bool          { return true }
func (failedBase) Packs() []id.ID                              { return nil }
func (failedBase) HasPack(id.ID) bool                          { return false }
func (failedBase) MemoryBytes() int                            { return 0 }
func (b failedBase) Err() error                                { return b.err }

// TestMapFind: Find returns what Lookup finds, ErrNotIndexed for a blob
// no index lists, and beside it the Base's error when the Base failed a
// read (the blob may be stored): the one answer every reader reports.
func TestMapFind(t *testing.T) {
	r := newRand(3)
	e := randEntry(r, randID(r))
	m := NewMap()
	m.Add(e)
	if got, err := m.Find(e.ID); err != nil || got != e {
		t.Fatalf("Find of an added blob: %+v, %v", got, err)
	}
	if _, err := m.Find(randID(r)); err != ErrNotIndexed {
		t.Fatalf("Find of an unknown blob: %v, want ErrNotIndexed alone", err)
	}
	cause := errors.New("bucket 7 failed its tag")
	over := NewMapOver(failedBase{cause})
	over.Add(e)
	if _, err := over.Find(e.ID); err != nil {
		t.Fatalf("Find of a blob added over a failed Base: %v", err)
	}
	_, err := over.Find(randID(r))
	if !errors.Is(err, ErrNotIndexed) || !errors.Is(err, ErrIncomplete) || !errors.Is(err, cause) || !strings.Contains(err.Error(), "may be stored") {
		t.Fatalf("Find over a failed Base: %v, want ErrNotIndexed and its cause", err)
	}
}
