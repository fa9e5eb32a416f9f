package diskidx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

var testKey = bytes.Repeat([]byte{7}, 32)

// genEntries returns n locations over a space of nIDs blob IDs and nPacks
// packs, so that blobs recur in other packs and in the same pack.
func genEntries(seed uint64, n, nIDs, nPacks int) []index.Entry {
	r := rand.New(rand.NewPCG(seed, 1))
	ids := make([]id.ID, nIDs)
	for i := range ids {
		for k := 0; k < id.Size; k += 8 {
			binary.LittleEndian.PutUint64(ids[i][k:], r.Uint64())
		}
		if i%7 == 1 { // share a prefix with the previous ID: same bucket
			copy(ids[i][:12], ids[i-1][:12])
		}
	}
	packs := make([]id.ID, nPacks)
	for i := range packs {
		packs[i] = id.Hash([]byte{byte(seed), byte(i), byte(i >> 8), byte(i >> 16)})
	}
	es := make([]index.Entry, n)
	for i := range es {
		es[i] = index.Entry{
			ID:        ids[r.IntN(nIDs)],
			Type:      index.BlobType(r.IntN(2)),
			Pack:      packs[r.IntN(nPacks)],
			Offset:    r.Uint32(),
			Length:    r.Uint32(),
			RawLength: r.Uint32(),
		}
	}
	return es
}

func build(t testing.TB, dir string, es []index.Entry, sources []id.ID) string {
	t.Helper()
	b, err := NewBuilder(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if err := b.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "index")
	if err := b.Finish(path, testKey, sources); err != nil {
		t.Fatal(err)
	}
	return path
}

// compare checks that the Map over a table built from es[:split] with
// es[split:] added answers as a Map given all of es.
func compare(t *testing.T, es []index.Entry, split int) {
	t.Helper()
	want := index.NewMap()
	for _, e := range es {
		want.Add(e)
	}
	dir := t.TempDir()
	tab, err := Open(build(t, dir, es[:split], nil), testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	got := index.NewMapOver(tab)
	for _, e := range es[split:] {
		got.Add(e)
	}
	if got.Len() != want.Len() {
		t.Fatalf("Len %d, want %d", got.Len(), want.Len())
	}
	probe := []id.ID{{}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	for _, e := range es {
		probe = append(probe, e.ID)
		u := e.ID
		u[31] ^= 1 // unknown, in the same bucket
		probe = append(probe, u)
	}
	for _, bid := range probe {
		we, wok := want.Lookup(bid)
		ge, gok := got.Lookup(bid)
		if we != ge || wok != gok {
			t.Fatalf("Lookup(%s) = %+v %v, want %+v %v", bid.Short(), ge, gok, we, wok)
		}
		if want.Has(bid) != got.Has(bid) {
			t.Fatalf("Has(%s) = %v", bid.Short(), got.Has(bid))
		}
		if wl, gl := want.Locations(bid), got.Locations(bid); !slices.Equal(wl, gl) {
			t.Fatalf("Locations(%s) = %+v, want %+v", bid.Short(), gl, wl)
		}
	}
	if wp, gp := want.Packs(), got.Packs(); !slices.Equal(wp, gp) {
		t.Fatalf("Packs = %d packs, want %d (or another order)", len(gp), len(wp))
	}
	collect := func(m *index.Map, each func(*index.Map, func(index.Entry) bool)) []index.Entry {
		var out []index.Entry
		each(m, func(e index.Entry) bool { out = append(out, e); return true })
		slices.SortFunc(out, func(a, b index.Entry) int {
			if c := bytes.Compare(a.ID[:], b.ID[:]); c != 0 {
				return c
			}
			return bytes.Compare(a.Pack[:], b.Pack[:])
		})
		return out
	}
	if w, g := collect(want, (*index.Map).Each), collect(got, (*index.Map).Each); !slices.Equal(w, g) {
		t.Fatalf("Each visits %d entries, want %d (or others)", len(g), len(w))
	}
	if w, g := collect(want, (*index.Map).EachLocation), collect(got, (*index.Map).EachLocation); !slices.Equal(w, g) {
		t.Fatalf("EachLocation visits %d entries, want %d (or others)", len(g), len(w))
	}
	// Stopping early stops.
	n := 0
	got.EachLocation(func(index.Entry) bool { n++; return n < 3 })
	if want.Len() >= 3 && n != 3 {
		t.Fatalf("EachLocation went on after false: %d calls", n)
	}
}

func TestSameAnswersAsMap(t *testing.T) {
	for _, c := range []struct{ n, ids, packs int }{
		{0, 1, 1}, {1, 1, 1}, {50, 10, 3}, {2000, 500, 40}, {20000, 20000, 300}, {30000, 3000, 2000},
	} {
		es := genEntries(uint64(c.n), c.n, c.ids, c.packs)
		for _, split := range []int{0, c.n / 2, c.n} {
			compare(t, es, split)
		}
	}
}

func FuzzSameAnswersAsMap(f *testing.F) {
	f.Add(uint64(1), uint16(100), uint16(20), uint8(5), uint16(50))
	f.Add(uint64(2), uint16(3000), uint16(3000), uint8(200), uint16(3000))
	f.Fuzz(func(t *testing.T, seed uint64, n, nIDs uint16, nPacks uint8, split uint16) {
		es := genEntries(seed, int(n), max(int(nIDs), 1), max(int(nPacks), 1))
		compare(t, es, int(split)%(int(n)+1))
	})
}

func TestSources(t *testing.T) {
	src := []id.ID{id.Hash([]byte("b")), id.Hash([]byte("a")), id.Hash([]byte("b"))}
	tab, err := Open(build(t, t.TempDir(), genEntries(1, 10, 10, 2), src), testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	want := []id.ID{src[1], src[0]}
	slices.SortFunc(want, func(a, b id.ID) int { return bytes.Compare(a[:], b[:]) })
	if got := tab.Sources(); !slices.Equal(got, want) {
		t.Fatalf("Sources = %v, want %v", got, want)
	}
}

func TestFileModeAndNoTempLeft(t *testing.T) {
	dir := t.TempDir()
	path := build(t, dir, genEntries(1, 1000, 500, 10), nil)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left in the directory: %v", ents)
	}
}

// TestLocationsSealed checks that no location is stored in plaintext.
func TestLocationsSealed(t *testing.T) {
	es := genEntries(3, 100, 100, 1)
	for i := range es {
		es[i].RawLength = 0x5a5a5a5a
	}
	b, err := os.ReadFile(build(t, t.TempDir(), es, nil))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte{0x5a, 0x5a, 0x5a, 0x5a}) {
		t.Fatal("a plaintext length is in the file")
	}
}

func TestDamageDetected(t *testing.T) {
	dir := t.TempDir()
	path := build(t, dir, genEntries(4, 5000, 3000, 50), []id.ID{id.Hash([]byte("x"))})
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	damaged := map[string][]byte{
		"empty":     {},
		"truncated": good[:len(good)-1],
		"longer":    append(slices.Clone(good), 0),
		"header":    flip(good, 9),
		"version":   flip(good, 4),
		// A header field changed and its CRC fixed: the MAC, which
		// only the key makes, still tells.
		"salt, header CRC fixed": recrc(flip(good, 50)),
		"sources, CRCs fixed":    recrc(flip(good, len(good)-1)),
	}
	for range 20 {
		damaged["body byte"] = flip(good, headerSize+r.IntN(len(good)-headerSize))
		for name, b := range damaged {
			p := filepath.Join(dir, "damaged")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if tab, err := Open(p, testKey); !errors.Is(err, ErrDamaged) {
				if tab != nil {
					tab.Close()
				}
				t.Fatalf("%s: Open: %v, want ErrDamaged", name, err)
			}
		}
	}
	other := bytes.Repeat([]byte{8}, 32)
	if _, err := Open(path, other); !errors.Is(err, ErrDamaged) {
		t.Fatalf("other key: Open: %v, want ErrDamaged", err)
	}
	if _, err := Open(filepath.Join(dir, "none"), testKey); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no file: Open: %v, want fs.ErrNotExist", err)
	}
}

// recrc fixes the header's CRC-32C.
func recrc(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[124:], crc32.Checksum(b[:124], castagnoli))
	return b
}

func flip(b []byte, i int) []byte {
	c := slices.Clone(b)
	c[i] ^= 0x10
	return c
}

// TestConcurrentUse looks blobs up from several goroutines while another
// adds to the Map over the table (run with -race).
func TestConcurrentUse(t *testing.T) {
	es := genEntries(9, 4000, 3000, 40)
	tab, err := Open(build(t, t.TempDir(), es[:2000], nil), testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	m := index.NewMapOver(tab)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := g; i < len(es); i += 4 {
				m.Lookup(es[i].ID)
				m.Locations(es[i].ID)
			}
		}()
	}
	for _, e := range es[2000:] {
		m.Add(e)
	}
	for range 4 {
		<-done
	}
	if err := tab.Err(); err != nil {
		t.Fatal(err)
	}
}
