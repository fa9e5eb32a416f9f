package repository

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// replaceObject rewrites object h of be with f applied to its bytes.
func replaceObject(t *testing.T, be backend.Backend, h backend.Handle, f func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	rd, err := be.Load(ctx, h, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rd)
	rd.Close()
	b = f(b)
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedIndexFallbackAndRepair(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	var ids []id.ID
	for i := range 20 {
		bid, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(uint64(i), 100_000))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, bid)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	idx, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil || len(idx) != 1 {
		t.Fatalf("index objects: %v %v", idx, err)
	}
	damaged := backend.Handle{Type: backend.IndexFile, Name: idx[0].String()}
	replaceObject(t, be, damaged, func(b []byte) []byte { b[len(b)/2] ^= 1; return b })

	r2 := reopen(t, be)
	if len(r2.IndexErrors()) != 1 || len(r2.HeaderPacks()) == 0 {
		t.Fatalf("index errors %v, header packs %v", r2.IndexErrors(), r2.HeaderPacks())
	}
	for _, bid := range ids {
		mustLoad(t, r2, bid) // found through the pack headers
	}
	rep, err := r2.RepairIndex(ctx, nil)
	if err != nil || len(rep.Removed) != 1 || rep.Indexed == 0 || len(rep.Kept) != 0 {
		t.Fatalf("RepairIndex: %+v, %v", rep, err)
	}
	if _, err := be.Stat(ctx, damaged); err == nil {
		t.Error("damaged index object not removed")
	}
	r3 := reopen(t, be)
	if len(r3.IndexErrors()) != 0 || len(r3.HeaderPacks()) != 0 || r3.Index().Len() != len(ids) {
		t.Fatalf("after repair: errors %v, header packs %v, %d blobs", r3.IndexErrors(), r3.HeaderPacks(), r3.Index().Len())
	}
}

// An index object that authenticates but does not decode (a newer format,
// say) is not damage on storage: repair never deletes it.
func TestRepairKeepsUndecodableIndex(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	if _, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(1, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	oid, err := r.saveSealed(ctx, backend.IndexFile, []byte("NGIX\x09 a future version"))
	if err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, be)
	rep, err := r2.RepairIndex(ctx, nil)
	if err != nil || len(rep.Removed) != 0 || len(rep.Kept) != 1 {
		t.Fatalf("RepairIndex: %+v, %v", rep, err)
	}
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.IndexFile, Name: oid.String()}); err != nil {
		t.Errorf("undecodable index object removed: %v", err)
	}
}
