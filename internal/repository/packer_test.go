package repository

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/backend/mem"
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
					bid = r.BlobID(from[1:])
					_, err = r.SaveBlobFrom(ctx, index.DataBlob, bid, from)
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

// failingPacks fails every save of a pack, once open is closed.
type failingPacks struct {
	*mem.Backend
	open chan struct{}
}

func (f *failingPacks) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	if h.Type == backend.PackFile {
		<-f.open
		return errors.New("upload failed")
	}
	return f.Backend.Save(ctx, h, rd, size)
}

// waiters starts n saves of small blobs, which wait for the pack the
// caller holds, and returns where their errors arrive.
func waiters(ctx context.Context, r *Repository, n int) chan error {
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(uint64(10+i), 1000))
			errs <- err
		}()
	}
	for { // until they wait
		r.packer.mu.Lock()
		waiting := r.packer.waiting
		r.packer.mu.Unlock()
		if waiting == n {
			return errs
		}
		time.Sleep(time.Millisecond)
	}
}

// returned checks that every one of n waiters returned an error.
func returned(t *testing.T, errs chan error, n int, why string) {
	t.Helper()
	for i := range n {
		select {
		case err := <-errs:
			if err == nil {
				t.Errorf("waiter %d: no error after %s", i, why)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("waiter %d still waits for a pack after %s", i, why)
		}
	}
}

// TestWaitersWakeOnUploadFailure: a pack's upload that fails in the
// background wakes every save waiting for a pack, which returns the
// failure (a review found the second of two waiters stranded: the
// backup hung).
func TestWaitersWakeOnUploadFailure(t *testing.T) {
	ctx := context.Background()
	be := &failingPacks{Backend: mem.New(), open: make(chan struct{})}
	r, err := Init(ctx, be, pass, InitOptions{Options: testOptions(), PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(1, 600<<10)); err != nil {
		t.Fatal(err)
	}
	// A holder whose blob does not fit: the first pack goes to its upload
	// (held up by the store), a second is held.
	op, err := r.packer.take(ctx, 500<<10)
	if err != nil {
		t.Fatal(err)
	}
	errs := waiters(ctx, r, 2)
	close(be.open) // the upload fails
	r.packer.wg.Wait()
	r.packer.give(op)
	returned(t, errs, 2, "an upload failed")
}

// TestWaitersWakeOnCancel: a save waiting for a pack returns when its
// context ends, though no pack is given back.
func TestWaitersWakeOnCancel(t *testing.T) {
	r, _ := newRepo(t)
	op, err := r.packer.take(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := waiters(ctx, r, 2)
	cancel()
	returned(t, errs, 2, "their context ended")
	r.packer.give(op)
}

// refusingLender has Lend but lends nothing (a local pack on a file
// system without direct writes, or the audit wrapper of a streamed one).
type refusingLender struct{ lendingObject }

func (o *refusingLender) Lend(int) []byte { return nil }

// TestSmallBlobsCoalescedWhenNotLent: an object that does not lend takes
// small blobs through the buffer, a few writes for many (a review found
// the buffer flushed at every blob: a write each).
func TestSmallBlobsCoalescedWhenNotLent(t *testing.T) {
	obj := &refusingLender{}
	op := &openPack{w: &coalesced{PendingObject: obj}, hash: sha256.New()}
	for range 100 {
		if _, err := op.appendSealed(100, func(room []byte) ([]byte, error) {
			if room != nil {
				t.Fatal("memory lent by an object that lends none")
			}
			return make([]byte, 100), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := op.w.Commit(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	if obj.writes > 1 || len(obj.data) != 100*100 {
		t.Errorf("100 blobs of 100 bytes reached the object in %d writes, %d bytes; want 1 write of 10000", obj.writes, len(obj.data))
	}
}

// TestCloseRemovesOpenPacks: a writer that fails before Flush (the
// storage full, an error elsewhere) leaves open packs; Close removes
// their temporary files, and nothing is stored.
func TestCloseRemovesOpenPacks(t *testing.T) {
	r, _, dir := localRepo(t, 1<<20)
	ctx := context.Background()
	for i := range 8 {
		b := make([]byte, 100_000)
		b[0], b[1] = byte(i), 0xa5
		if _, _, err := r.SaveBlob(ctx, index.DataBlob, b); err != nil {
			t.Fatal(err)
		}
	}
	temps := func() []string {
		var out []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && len(d.Name()) > 5 && d.Name()[:5] == ".tmp-" {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	if len(temps()) == 0 {
		t.Fatal("no open pack before Close")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if tmp := temps(); len(tmp) > 0 {
		t.Errorf("Close left the open packs' temporary files: %v", tmp)
	}
	if packs := packFiles(t, dir); len(packs) != 0 {
		t.Errorf("%d packs stored without Flush", len(packs))
	}
}
