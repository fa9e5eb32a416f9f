package audit

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/compact"
)

// Every record of logs of every size up to 17 has an inclusion proof in
// the newest checkpoint, and in an older one the records before it; a
// proof of another leaf, position or checkpoint fails.
func TestInclusionProofs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	var cps []*Checkpoint
	for n := 1; n <= 17; n++ {
		cps = append(cps, f.appendN(t, 1, 1+n%3)...)
	}
	for _, cp := range []*Checkpoint{cps[0], cps[4], cps[len(cps)-1]} {
		var cmds []string
		tr, err := f.log.ReadTree(ctx, cp, func(pos uint64, r *Record, err error) error {
			if err != nil {
				return err
			}
			cmds = append(cmds, r.Command)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(cmds)) != cp.Size {
			t.Fatalf("read %d records up to a checkpoint of %d", len(cmds), cp.Size)
		}
		for pos := range cp.Size {
			p, err := tr.Prove(pos)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(cp, p); err != nil {
				t.Errorf("size %d, record %d: %v", cp.Size, pos, err)
			}
			if cp.Size > 1 {
				bad := *p
				bad.Position = (pos + 1) % cp.Size
				if err := VerifyInclusion(cp, &bad); err == nil {
					t.Errorf("size %d: the proof of %d passes for %d", cp.Size, pos, bad.Position)
				}
			}
			bad := *p
			bad.LeafHash = strings.Repeat("00", 32)
			if err := VerifyInclusion(cp, &bad); err == nil {
				t.Errorf("size %d, record %d: a forged leaf passes", cp.Size, pos)
			}
		}
	}
	// A proof against a checkpoint whose root is not the tree's.
	if _, err := NewTree(cps[1], nil); err == nil {
		t.Error("a tree without leaves for a non-empty checkpoint")
	}
}

// rootOf and hashChildren, Verify's hashing without allocations, give what
// the RFC 6962 hasher and compact.Range.GetRootHash give.
func TestRootOfMatchesGetRootHash(t *testing.T) {
	slow := &compact.RangeFactory{Hash: hasher.HashChildren}
	want := slow.NewEmptyRange(0)
	got := rangeFactory.NewEmptyRange(0)
	for i := range 300 {
		lh := leafHash([]byte{byte(i), byte(i >> 8)})
		if err := want.Append(lh, nil); err != nil {
			t.Fatal(err)
		}
		if err := got.Append(lh, nil); err != nil {
			t.Fatal(err)
		}
		root, err := want.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		if r := rootOf(got.Hashes()); !bytes.Equal(r[:], root) {
			t.Fatalf("size %d: rootOf %x, GetRootHash %x", i+1, r, root)
		}
	}
	if l, r := []byte("short"), leafHash(nil); !bytes.Equal(hashChildren(l, r), hasher.HashChildren(l, r)) {
		t.Error("hashChildren of a hash that is not 32 bytes differs from the hasher's")
	}
}
