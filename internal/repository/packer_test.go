package repository

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// localRepo initialises a repository on a local directory (packs written
// past the page cache where the file system takes that, each blob sealed
// into its pack's block) with packs of packSize.
func localRepo(t *testing.T, packSize int) (*Repository, backend.Backend, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(context.Background(), be, pass, InitOptions{Options: testOptions(), PackSize: packSize})
	if err != nil {
		t.Fatal(err)
	}
	return r, be, dir
}

// packFiles returns the pack files under dir's data directory.
func packFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	packs := map[string][]byte{}
	err := filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		packs[d.Name()] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return packs
}

// TestPacksFilledInParallel: blobs saved by many goroutines at once, from
// a few bytes to more than a pack's block, raw and compressible, through
// SaveBlob and SaveBlobFrom, land in packs filled in parallel (sealed
// straight into them where they lend memory, written otherwise): every
// pack is named by the hash of its bytes and no larger than the pack size
// allows, and every blob reads back as saved.
func TestPacksFilledInParallel(t *testing.T) {
	ctx := context.Background()
	const packSize = 6 << 20
	r, be, dir := localRepo(t, packSize)
	sizes := []int{1, 150, 3000, 70_000, 1 << 20, 4<<20 - 5000, 4<<20 - 100, 5 << 20}
	var mu sync.Mutex
	want := map[id.ID][]byte{}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 24 {
				n := sizes[(g+i)%len(sizes)]
				d := randBytes(uint64(g*1000+i), n)
				if i%3 == 0 { // compressible
					d = bytes.Repeat([]byte("ledger entry 42;"), n/16+1)[:n]
					d[0] = byte(g*31 + i)
				}
				var bid id.ID
				var err error
				if i%2 == 0 {
					bid, _, err = r.SaveBlob(ctx, index.DataBlob, d)
				} else {
					from := append([]byte{0}, d...)
					bid, _, err = r.SaveBlobFrom(ctx, index.DataBlob, from)
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[bid] = d
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	packs := packFiles(t, dir)
	for name, b := range packs {
		h := r.objects.New()
		h.Write(b)
		if got := id.ID(h.Sum(nil)).String(); got != name {
			t.Errorf("pack %s holds bytes that hash to %s", name, got)
		}
		// A pack outgrows the pack size only by its header, or when a
		// single blob is larger.
		if len(b) > packSize+64<<10 && len(b) > 5<<20+64<<10 {
			t.Errorf("pack %s is %d bytes, the pack size %d", name, len(b), packSize)
		}
	}
	r2 := reopen(t, be)
	for bid, d := range want {
		got, err := r2.LoadBlob(ctx, bid, nil)
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("blob %s of %d bytes: read back %d bytes, %v", bid.Short(), len(d), len(got), err)
		}
	}
}

// TestPackerSealFailure: a seal that fails in memory the pack lent it
// loses that pack (the blobs in it are never indexed and the failure
// sticks, failing the backup), while one that fails in memory of its own
// leaves the pack as it was.
func TestPackerSealFailure(t *testing.T) {
	ctx := context.Background()
	r, be, dir := localRepo(t, 1<<20)
	kept, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(1, 10_000))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	lent := false
	fail := func(room []byte) ([]byte, error) {
		lent = room != nil
		return nil, boom
	}
	bid := id.ID{1}
	r.packer.reserve(bid)
	if err := r.packer.add(ctx, index.DataBlob, bid, 1000, 900, fail); !errors.Is(err, boom) {
		t.Fatalf("add with a failing seal: %v", err)
	}
	r.packer.unreserve(bid)
	if !lent {
		// Memory of its own: the pack is intact and goes on.
		if err := r.packer.failed(); err != nil {
			t.Fatalf("a seal that failed in its own memory failed the packer: %v", err)
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := reopen(t, be).LoadBlob(ctx, kept, nil); err != nil {
			t.Fatal(err)
		}
		t.Skip("this file system takes no direct writes: packs lend no memory")
	}
	if err := r.packer.failed(); !errors.Is(err, boom) {
		t.Fatalf("a seal that failed in lent memory did not fail the packer: %v", err)
	}
	if _, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(2, 10_000)); !errors.Is(err, boom) {
		t.Errorf("a save after the pack was lost: %v", err)
	}
	if err := r.Flush(ctx); !errors.Is(err, boom) {
		t.Errorf("Flush after the pack was lost: %v", err)
	}
	if packs := packFiles(t, dir); len(packs) != 0 {
		t.Errorf("the lost pack was stored: %d packs", len(packs))
	}
	if _, err := reopen(t, be).LoadBlob(ctx, kept, nil); !errors.Is(err, ErrBlobNotFound) {
		t.Errorf("a blob of the lost pack: %v, want ErrBlobNotFound", err)
	}
}

// TestSmallBlobsShareAPack: blobs below parallelBlob saved by many
// goroutines at once wait for the open pack instead of opening more, so a
// backup of small changes leaves one pack, not one per worker.
func TestSmallBlobsShareAPack(t *testing.T) {
	ctx := context.Background()
	r, _, dir := localRepo(t, DefaultPackSize)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				if _, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(uint64(g*100+i), 1+(g*i*7919)%20_000)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if packs := packFiles(t, dir); int64(len(packs)) > 1+r.Stats.PackBytes.Load()/DefaultPackSize {
		t.Errorf("%d packs for %d bytes of small blobs", len(packs), r.Stats.PackBytes.Load())
	}
}

// lendingObject is a pending object that lends the memory of its next
// bytes (as a local pack written past the page cache does).
type lendingObject struct {
	data   []byte
	writes int
}

func (o *lendingObject) Write(b []byte) (int, error) {
	o.writes++
	o.data = append(o.data, b...)
	return len(b), nil
}

func (o *lendingObject) Lend(n int) []byte {
	o.data = append(o.data, make([]byte, n)...)
	return o.data[len(o.data)-n:]
}

func (o *lendingObject) Commit(context.Context, string) error { return nil }
func (o *lendingObject) Abort() error                         { return nil }

// TestHeaderWrittenIntoLentMemory: a pack's header and trailer go into the
// memory its object lends, like its blobs, so a pack that lends never
// makes the 256 KiB buffer of a streamed one for its last few bytes.
func TestHeaderWrittenIntoLentMemory(t *testing.T) {
	obj := &lendingObject{}
	c := &coalesced{PendingObject: obj}
	op := &openPack{w: c, hash: sha256.New()}
	if _, err := op.appendSealed(5, func(room []byte) ([]byte, error) { return room[:copy(room, "blob.")], nil }); err != nil {
		t.Fatal(err)
	}
	if err := op.write([]byte("header")); err != nil {
		t.Fatal(err)
	}
	if string(obj.data) != "blob.header" || obj.writes != 0 || c.w != nil || op.size != 11 {
		t.Errorf("pack %q after %d writes (buffer made: %v), size %d; want \"blob.header\" lent, no buffer", obj.data, obj.writes, c.w != nil, op.size)
	}
	if want := sha256.Sum256([]byte("blob.header")); !bytes.Equal(op.hash.Sum(nil), want[:]) {
		t.Error("the pack's hash is not that of its bytes")
	}
}
