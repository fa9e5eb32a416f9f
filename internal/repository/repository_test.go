package repository

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/directio"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

var pass = []byte("correct horse battery staple")

func testOptions() Options {
	kdf := crypto.FastKDFParamsForTests()
	return Options{KDF: &kdf}
}

func newRepo(t *testing.T) (*Repository, backend.Backend) {
	t.Helper()
	be := mem.New()
	r, err := Init(context.Background(), be, pass, InitOptions{Options: testOptions(), PackSize: 1 << 20,
		Chunker: ChunkerSizes{Min: 64 << 10, Avg: 128 << 10, Max: 512 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	return r, be
}

func reopen(t *testing.T, be backend.Backend) *Repository {
	t.Helper()
	r, err := Open(context.Background(), be, pass, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func randBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestInitOpen(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	if _, err := Init(ctx, be, pass, InitOptions{Options: testOptions()}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("second init: got %v, want ErrAlreadyExists", err)
	}
	if _, err := Open(ctx, be, []byte("wrong"), testOptions()); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: got %v", err)
	}
	if _, err := Open(ctx, mem.New(), pass, testOptions()); !errors.Is(err, ErrNoRepository) {
		t.Fatalf("empty backend: got %v", err)
	}
	r2 := reopen(t, be)
	if r2.Config().ID != r.Config().ID {
		t.Fatal("reopened a different repository")
	}
}

func TestSaveLoadDedup(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	var ids []id.ID
	var datas [][]byte
	for i := range 40 {
		d := randBytes(uint64(i), 100_000+i)
		if i%2 == 0 {
			d = bytes.Repeat([]byte("ledger row;"), 10_000+i) // compressible
		}
		bid, known, err := r.SaveBlob(ctx, index.DataBlob, d)
		if err != nil || known {
			t.Fatalf("save %d: known=%v err=%v", i, known, err)
		}
		ids, datas = append(ids, bid), append(datas, d)
	}
	if _, known, _ := r.SaveBlob(ctx, index.DataBlob, datas[3]); !known {
		t.Fatal("second save of the same data was not deduplicated")
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, be)
	for i, bid := range ids {
		got, err := r2.LoadBlob(ctx, bid, nil)
		if err != nil || !bytes.Equal(got, datas[i]) {
			t.Fatalf("load %d: err=%v equal=%v", i, err, bytes.Equal(got, datas[i]))
		}
	}
	if r.Stats.StoredBytes.Load() >= r.Stats.RawBytes.Load() {
		t.Errorf("compressible data did not shrink: stored %d raw %d", r.Stats.StoredBytes.Load(), r.Stats.RawBytes.Load())
	}
}

func TestConcurrentSave(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				// Goroutines overlap on half of the blobs.
				if _, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(uint64(i+g%2*1000), 20_000)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := r.Stats.NewBlobs.Load(); n != 100 {
		t.Fatalf("stored %d blobs, want 100 distinct", n)
	}
	if got := reopen(t, be).Index().Len(); got != 100 {
		t.Fatalf("index has %d blobs after reopen, want 100", got)
	}
}

func TestCorruptionDetected(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	d := randBytes(7, 50_000)
	bid, _, _ := r.SaveBlob(ctx, index.DataBlob, d)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e, _ := r.Index().Lookup(bid)
	h := backend.Handle{Type: backend.PackFile, Name: e.Pack.String()}
	rd, err := be.Load(ctx, h, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := io.ReadAll(rd)
	rd.Close()
	buf[e.Offset+100] ^= 0x01
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, bytes.NewReader(buf), int64(len(buf))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadBlob(ctx, bid, nil); !errors.Is(err, ErrObjectCorrupted) {
		t.Fatalf("flipped byte: got %v, want ErrObjectCorrupted", err)
	}
}

func TestOrphanPacksReused(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	var ids []id.ID
	for i := range 30 {
		bid, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(uint64(i), 100_000))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, bid)
	}
	// Upload the packs but "crash" before the index is written.
	if err := r.packer.flush(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, be)
	if r2.Index().Has(ids[0]) {
		t.Fatal("test setup: blob indexed although no index was written")
	}
	n, err := r2.IndexOrphanPacks(ctx, nil)
	if err != nil || n == 0 {
		t.Fatalf("IndexOrphanPacks: n=%d err=%v", n, err)
	}
	for _, bid := range ids {
		if _, known, err := r2.SaveBlob(ctx, index.DataBlob, mustLoad(t, r2, bid)); err != nil || !known {
			t.Fatalf("blob from orphan pack not reused: known=%v err=%v", known, err)
		}
	}
	if r3 := reopen(t, be); r3.Index().Len() != len(ids) {
		t.Fatalf("recovered index not persisted: %d blobs", r3.Index().Len())
	}
}

func mustLoad(t *testing.T, r *Repository, bid id.ID) []byte {
	t.Helper()
	b, err := r.LoadBlob(context.Background(), bid, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	if _, err := r.RemoveKey(ctx, r.keyID[:8]); !errors.Is(err, ErrLastKey) {
		t.Fatalf("removing the last key: got %v", err)
	}
	second := []byte("second passphrase")
	kid, err := r.AddKey(ctx, second, "ops")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, be, second, testOptions())
	if err != nil {
		t.Fatalf("open with second key: %v", err)
	}
	keys, _ := r2.ListKeys(ctx)
	if len(keys) != 2 {
		t.Fatalf("%d keys listed", len(keys))
	}
	if _, err := r2.RemoveKey(ctx, kid[:8]); err == nil {
		t.Fatal("removed the key in use")
	}
	if _, err := r2.RemoveKey(ctx, r.keyID[:8]); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, pass, testOptions()); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("removed passphrase still opens: %v", err)
	}
}

func TestObjectsHashChecked(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	oid, err := r.SaveObject(ctx, backend.SnapshotFile, map[string]int{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if err := r.LoadObject(ctx, backend.SnapshotFile, oid, &v); err != nil || v["a"] != 1 {
		t.Fatalf("load: %v %v", v, err)
	}
	h := backend.Handle{Type: backend.SnapshotFile, Name: oid.String()}
	_ = be.Remove(ctx, h)
	_ = be.Save(ctx, h, bytes.NewReader([]byte("garbage")), 7)
	if err := r.LoadObject(ctx, backend.SnapshotFile, oid, &v); !errors.Is(err, ErrObjectCorrupted) {
		t.Fatalf("garbage object: %v", err)
	}
	_ = fs.ErrExist
}

// TestPacksSpooled: a backend that cannot stream (S3, here the in-memory
// one) gets its packs through spool files that leave nothing behind, and a
// spool directory that cannot be written fails the save with a message
// naming TMPDIR.
func TestPacksSpooled(t *testing.T) {
	ctx := context.Background()
	spool := t.TempDir()
	t.Setenv("TMPDIR", spool)
	r, be := newRepo(t)
	var ids []id.ID
	for i := range 30 { // about three 1 MiB packs
		bid, _, err := r.SaveBlob(ctx, index.DataBlob, randBytes(uint64(i), 100_000))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, bid)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("spool files left behind: %v", left)
	}
	r2 := reopen(t, be)
	for _, bid := range ids {
		if _, err := r2.LoadBlob(ctx, bid, nil); err != nil {
			t.Fatal(err)
		}
	}

	t.Setenv("TMPDIR", filepath.Join(spool, "missing"))
	_, _, err := r2.SaveBlob(ctx, index.DataBlob, randBytes(99, 100_000))
	if err == nil {
		err = r2.Flush(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "TMPDIR") {
		t.Errorf("save with an unwritable spool directory: %v, want an error naming TMPDIR", err)
	}
}

// LoadPackBlobs reads only some blobs of each pack: the ones between them
// are read through and dropped, and every requested blob still arrives
// intact, in pack order.
func TestLoadPackBlobsWithGaps(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	want := map[id.ID][]byte{}
	var ids []id.ID
	for i := range 30 {
		d := randBytes(uint64(100+i), 50_000+i)
		bid, _, err := r.SaveBlob(ctx, index.DataBlob, d)
		if err != nil {
			t.Fatal(err)
		}
		want[bid] = d
		ids = append(ids, bid)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, be)
	byPack := map[id.ID][]index.Entry{}
	for i, bid := range ids {
		if i%3 != 0 {
			continue // a gap of two blobs
		}
		e, ok := r2.Index().Lookup(bid)
		if !ok {
			t.Fatalf("blob %d not indexed", i)
		}
		byPack[e.Pack] = append(byPack[e.Pack], e)
	}
	got := 0
	for pid, es := range byPack {
		last := int64(-1)
		err := r2.LoadPackBlobs(ctx, pid, es, func(e index.Entry, plain []byte, err error) error {
			if err != nil {
				return err
			}
			if int64(e.Offset) <= last {
				t.Errorf("blob at %d delivered after one at %d", e.Offset, last)
			}
			last = int64(e.Offset)
			if !bytes.Equal(plain, want[e.ID]) {
				t.Errorf("blob %s: wrong content", e.ID.Short())
			}
			got++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got != 10 {
		t.Fatalf("%d blobs delivered, want 10", got)
	}
}

// LoadPackBlobsPlaced delivers every blob intact, each with its plaintext
// where place asked within a page (what lets a restore's Filler write its
// whole pages without a copy): raw blobs read there, compressed ones
// decompressed there.
func TestLoadPackBlobsPlaced(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	want := map[id.ID][]byte{}
	for i := range 24 {
		d := randBytes(uint64(300+i), 20_000+977*i)
		if i%4 == 3 {
			d = bytes.Repeat([]byte("compressible "), 2000+i) // stored compressed
		}
		bid, _, err := r.SaveBlob(ctx, index.DataBlob, d)
		if err != nil {
			t.Fatal(err)
		}
		want[bid] = d
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, be)
	byPack := map[id.ID][]index.Entry{}
	for bid := range want {
		e, ok := r2.Index().Lookup(bid)
		if !ok {
			t.Fatalf("blob %s not indexed", bid.Short())
		}
		byPack[e.Pack] = append(byPack[e.Pack], e)
	}
	at := func(e index.Entry) int {
		if e.ID[0]%5 == 0 {
			return -1 // anywhere
		}
		return int(e.ID[1])<<4 | int(e.ID[2]&15) // 0..4095
	}
	got, placed := 0, 0
	for pid, es := range byPack {
		err := r2.LoadPackBlobsPlaced(ctx, pid, es, at, func(e index.Entry, plain []byte, err error) error {
			if err != nil {
				return err
			}
			got++
			if !bytes.Equal(plain, want[e.ID]) {
				t.Errorf("blob %s: wrong content", e.ID.Short())
			}
			if a := at(e); a >= 0 {
				placed++
				if in := int(uintptr(unsafe.Pointer(&plain[0])) % directio.Align); in != a {
					t.Errorf("blob %s begins at %d within its page, asked for %d", e.ID.Short(), in, a)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got != len(want) || placed == 0 {
		t.Fatalf("%d blobs delivered (want %d), %d placed", got, len(want), placed)
	}
}

// skip drops exactly n bytes, also more than its buffer holds.
func TestSkip(t *testing.T) {
	data := randBytes(7, 3<<20+5)
	rd := bytes.NewReader(data)
	buf, err := skip(rd, 3<<20+1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cap(buf) < 1<<20 {
		t.Errorf("buffer of %d bytes, want at least 1 MiB", cap(buf))
	}
	rest, _ := io.ReadAll(rd)
	if !bytes.Equal(rest, data[3<<20+1:]) {
		t.Fatalf("%d bytes left after skip, want 4", len(rest))
	}
	if _, err := skip(bytes.NewReader(data[:10]), 11, buf); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("skip past the end: %v, want io.ErrUnexpectedEOF", err)
	}
}

// Close zeroes the repository's keys: whatever is used afterwards fails
// with crypto.ErrClosed, without a panic and without storing anything.
func TestCloseZeroesKey(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	bid, _, err := r.SaveBlob(ctx, index.DataBlob, []byte("before close"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !r.key.Closed() {
		t.Fatal("Close left the key open")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.LoadBlob(ctx, bid, nil); !errors.Is(err, crypto.ErrClosed) {
		t.Errorf("LoadBlob after Close: %v, want crypto.ErrClosed", err)
	}
	if _, _, err := r.SaveBlob(ctx, index.DataBlob, []byte("after close")); !errors.Is(err, crypto.ErrClosed) {
		t.Errorf("SaveBlob after Close: %v, want crypto.ErrClosed", err)
	}
	if _, err := r.SaveObject(ctx, backend.SnapshotFile, map[string]string{"a": "b"}); !errors.Is(err, crypto.ErrClosed) {
		t.Errorf("SaveObject after Close: %v, want crypto.ErrClosed", err)
	}
	if err := r.SaveNamed(ctx, backend.WALFile, "000000010000000000000001", []byte("wal")); !errors.Is(err, crypto.ErrClosed) {
		t.Errorf("SaveNamed after Close: %v, want crypto.ErrClosed", err)
	}
	if _, err := r.AddKey(ctx, []byte("another"), ""); !errors.Is(err, crypto.ErrClosed) {
		t.Errorf("AddKey after Close: %v, want crypto.ErrClosed", err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Errorf("Flush after Close with nothing pending: %v", err)
	}
	var n int
	be.List(ctx, backend.SnapshotFile, func(backend.FileInfo) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d snapshot objects stored after Close", n)
	}
	// The data saved before is intact: a new opening reads it.
	if got, err := reopen(t, be).LoadBlob(ctx, bid, nil); err != nil || string(got) != "before close" {
		t.Errorf("reopened: %q, %v", got, err)
	}
}
