package diskidx

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
)

// TestHostileEditAfterOpen: the MAC is checked only at Open; a record
// edited in place afterwards makes an unknown blob look present.
func TestHostileEditAfterOpen(t *testing.T) {
	es := genEntries(3, 200, 150, 5)
	path := build(t, t.TempDir(), es, nil)
	tab, err := Open(path, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	// The first record's blob ID: flip its last bit, keep it in the bucket.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rec [id.Size]byte
	if _, err := f.ReadAt(rec[:], headerSize); err != nil {
		t.Fatal(err)
	}
	forged := id.ID(rec)
	forged[id.Size-1] ^= 1
	if tab.Has(forged) {
		t.Skip("forged ID present already")
	}
	if _, err := f.WriteAt(forged[:], headerSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if tab.Has(forged) {
		t.Errorf("blob %s, stored nowhere, is reported present after an in-place edit of the open cache (MAC checked only at Open)", forged.Short())
	}
}

// TestDamagedBuckets: DamagedBuckets reads the whole file and names every
// bucket that fails its tag, those no lookup met yet too, so that one
// repair covers them all; the blobs of the others are still found.
func TestDamagedBuckets(t *testing.T) {
	es := genEntries(5, 2000, 1500, 7)
	path := build(t, t.TempDir(), es, nil)
	tab, err := Open(path, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	if bad := tab.DamagedBuckets(); len(bad) != 0 {
		t.Fatalf("an intact file: damaged buckets %v", bad)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The first records of two buckets far apart.
	first, last := es[0].ID, es[0].ID
	for _, e := range es {
		if tab.Bucket(e.ID) < tab.Bucket(first) {
			first = e.ID
		}
		if tab.Bucket(e.ID) > tab.Bucket(last) {
			last = e.ID
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, bid := range []id.ID{first, last} {
		i := bytes.Index(b, bid[:])
		if _, err := f.WriteAt([]byte{b[i+id.Size-1] ^ 1}, int64(i+id.Size-1)); err != nil {
			t.Fatal(err)
		}
	}
	bad := tab.DamagedBuckets()
	if want := []uint64{tab.Bucket(first), tab.Bucket(last)}; !slices.Equal(bad, want) {
		t.Fatalf("damaged buckets %v, want %v", bad, want)
	}
	if !errors.Is(tab.Err(), ErrDamaged) {
		t.Errorf("Err after DamagedBuckets: %v", tab.Err())
	}
	if _, err := os.Stat(path + ".damaged"); err != nil {
		t.Errorf("the file was not moved aside: %v", err)
	}
	for _, e := range es {
		if b := tab.Bucket(e.ID); b != tab.Bucket(first) && b != tab.Bucket(last) && !tab.Has(e.ID) {
			t.Fatalf("blob %s of an intact bucket not found", e.ID.Short())
		}
	}
}
