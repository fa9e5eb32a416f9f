package diskidx

import (
	"os"
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
