package repository

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// logBuffer collects a repository's log output for a test.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// twoCopies stores blobs on a local directory through two handles on the
// repository opened before either wrote (two backups at once do this),
// so that every blob sits in two packs, and returns the directory, the
// blobs and the packs of each handle.
func twoCopies(t *testing.T) (dir string, want map[id.ID][]byte, first, second []id.ID) {
	t.Helper()
	ctx := context.Background()
	a, be, dir := localRepo(t, 1<<20)
	b := reopen(t, be)
	want = map[id.ID][]byte{}
	packsOf := func(r *Repository) []id.ID {
		before := r.Index().Packs()
		for i := range 30 {
			d := randBytes(uint64(200+i), 60_000)
			bid, known, err := r.SaveBlob(ctx, index.DataBlob, d)
			if err != nil || known {
				t.Fatalf("SaveBlob: known %v, %v", known, err)
			}
			want[bid] = d
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return r.Index().Packs()[len(before):]
	}
	first, second = packsOf(a), packsOf(b)
	if len(first) < 2 || len(second) < 2 {
		t.Fatalf("packs: %d and %d", len(first), len(second))
	}
	return dir, want, first, second
}

// openLogged opens the repository in dir with its warnings logged to the
// returned buffer, and loads its index.
func openLogged(t *testing.T, dir string) (*Repository, *logBuffer) {
	t.Helper()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var log logBuffer
	o := testOptions()
	o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	r, err := Open(context.Background(), be, pass, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r, &log
}

// TestReadsFallBackToOtherCopies: when the pack the index names first for
// a blob is missing or damaged, LoadBlob and LoadPackBlobs read the copy
// in the other pack, with a warning naming the damaged pack, instead of
// failing. Damage of every copy still fails.
func TestReadsFallBackToOtherCopies(t *testing.T) {
	ctx := context.Background()
	dir, want, first, second := twoCopies(t)
	// Which copy is first depends on the order the index objects were
	// read in: damage the packs this handle names first.
	r, log := openLogged(t, dir)
	for bid := range want {
		if n := len(r.Index().Locations(bid)); n != 2 {
			t.Fatalf("blob %s has %d locations, want 2", bid.Short(), n)
		}
	}
	packPath := func(p id.ID) string { return filepath.Join(dir, "data", p.String()[:2], p.String()) }
	if _, err := os.Stat(packPath(first[0])); err != nil {
		t.Fatalf("pack layout: %v", err)
	}
	// Damage two of the packs the index names first: one removed, one
	// with a byte flipped every KiB (its blobs no longer authenticate).
	var primary []id.ID
	seen := map[id.ID]bool{}
	for bid := range want {
		if e, _ := r.Index().Lookup(bid); !seen[e.Pack] {
			seen[e.Pack] = true
			primary = append(primary, e.Pack)
		}
	}
	if len(primary) < 2 {
		t.Fatalf("first locations in %d packs", len(primary))
	}
	if err := os.Remove(packPath(primary[0])); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(packPath(primary[1]))
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < len(b); i += 1000 {
		b[i] ^= 0x40
	}
	os.Chmod(packPath(primary[1]), 0o644)
	if err := os.WriteFile(packPath(primary[1]), b, 0o644); err != nil {
		t.Fatal(err)
	}

	for bid, d := range want {
		got, err := r.LoadBlob(ctx, bid, nil)
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("LoadBlob(%s) with its first copy damaged: %v", bid.Short(), err)
		}
	}
	byPack := map[id.ID][]index.Entry{}
	for bid := range want {
		e, _ := r.Index().Lookup(bid)
		byPack[e.Pack] = append(byPack[e.Pack], e)
	}
	n := 0
	for pid, es := range byPack {
		err := r.LoadPackBlobs(ctx, pid, es, func(e index.Entry, plain []byte, err error) error {
			if err != nil || !bytes.Equal(plain, want[e.ID]) {
				t.Errorf("LoadPackBlobs: blob %s of pack %s: %v", e.ID.Short(), pid.Short(), err)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n != len(want) {
		t.Fatalf("LoadPackBlobs delivered %d blobs, want %d", n, len(want))
	}
	for _, p := range primary[:2] {
		if c := strings.Count(log.String(), "pack="+p.String()); c != 1 {
			t.Errorf("damaged pack %s warned about %d times, want once:\n%s", p.Short(), c, log.String())
		}
	}
	dc := r.DamagedCopies()
	if len(dc) != 2 || !slices.ContainsFunc(dc, func(d DamagedCopy) bool { return d.Pack == primary[0] }) ||
		!slices.ContainsFunc(dc, func(d DamagedCopy) bool { return d.Pack == primary[1] }) {
		t.Errorf("DamagedCopies = %+v, want packs %s and %s", dc, primary[0].Short(), primary[1].Short())
	}

	// With both copies gone, reads fail and name both packs.
	all := append(append([]id.ID(nil), first...), second...)
	for _, p := range all {
		os.Remove(packPath(p))
	}
	r, _ = openLogged(t, dir)
	for bid := range want {
		_, err := r.LoadBlob(ctx, bid, nil)
		ls := r.Index().Locations(bid)
		if err == nil || !strings.Contains(err.Error(), ls[0].Pack.Short()) || !strings.Contains(err.Error(), ls[1].Pack.Short()) {
			t.Fatalf("LoadBlob with no copy left: %v", err)
		}
		break
	}
}

// TestHeaderFallbackAndRepairKeepEveryCopy: with the index object of one
// copy damaged, its packs are read from their headers, and 'repair index'
// writes them into new index objects: either way every blob keeps both
// locations, so retention, holds and reads still see both copies.
func TestHeaderFallbackAndRepairKeepEveryCopy(t *testing.T) {
	ctx := context.Background()
	dir, want, first, _ := twoCopies(t)
	r, _ := openLogged(t, dir)
	// Damage the index object listing the first handle's packs.
	var victim id.ID
	ids, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, iid := range ids {
		plain, err := r.loadSealed(ctx, backend.IndexFile, iid)
		if err != nil {
			t.Fatal(err)
		}
		f, err := index.Decode(plain)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(f.Packs, func(p index.PackBlobs) bool { return p.Pack == first[0] }) {
			victim = iid
		}
	}
	p := filepath.Join(dir, "index", victim.String())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}

	check := func(r *Repository, when string) {
		t.Helper()
		for bid := range want {
			if n := len(r.Index().Locations(bid)); n != 2 {
				t.Fatalf("%s: blob %s has %d locations, want 2", when, bid.Short(), n)
			}
		}
	}
	r, _ = openLogged(t, dir)
	if len(r.IndexErrors()) != 1 || len(r.HeaderPacks()) != len(first) {
		t.Fatalf("index errors %v, header packs %d, want 1 and %d", r.IndexErrors(), len(r.HeaderPacks()), len(first))
	}
	check(r, "from the pack headers")
	rep, err := r.RepairIndex(ctx, nil)
	if err != nil || rep.Indexed != len(first) || len(rep.Removed) != 1 {
		t.Fatalf("RepairIndex: %+v, %v", rep, err)
	}
	r, _ = openLogged(t, dir)
	if len(r.IndexErrors()) != 0 || len(r.HeaderPacks()) != 0 {
		t.Fatalf("after repair: index errors %v, header packs %v", r.IndexErrors(), r.HeaderPacks())
	}
	check(r, "after repair index")
}

// TestCopyBlobsAuthenticates: prune's repack copies a blob's sealed bytes
// only once its seal authenticates. A pack with a byte flipped in each
// blob is copied from the other pack holding its blobs (sealed anew), and
// the new copies alone read back byte for byte; damaged again with no
// other copy, CopyBlobs fails naming the blob, so the caller keeps the pack.
func TestCopyBlobsAuthenticates(t *testing.T) {
	ctx := context.Background()
	dir, want, _, _ := twoCopies(t)
	packPath := func(p id.ID) string { return filepath.Join(dir, "data", p.String()[:2], p.String()) }
	flip := func(pid id.ID, blobs []index.Entry) {
		t.Helper()
		b, err := os.ReadFile(packPath(pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range blobs {
			b[e.Offset+e.Length/2] ^= 0x01 // inside the sealed body: only the seal's tag tells
		}
		os.Chmod(packPath(pid), 0o644)
		if err := os.WriteFile(packPath(pid), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := openLogged(t, dir)
	var pid id.ID
	var blobs []index.Entry
	for bid := range want {
		e, _ := r.Index().Lookup(bid)
		if blobs == nil {
			pid = e.Pack
		}
		if e.Pack == pid {
			blobs = append(blobs, e)
		}
	}
	flip(pid, blobs)
	old := map[id.ID]bool{}
	for _, e := range blobs {
		for _, l := range r.Index().Locations(e.ID) {
			old[l.Pack] = true
		}
	}
	if err := r.CopyBlobs(ctx, pid, slices.Clone(blobs)); err != nil {
		t.Fatalf("CopyBlobs with another copy of every blob: %v", err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for p := range old {
		os.Remove(packPath(p))
	}
	r, _ = openLogged(t, dir)
	var copied []index.Entry
	for _, e := range blobs {
		got, err := r.LoadBlob(ctx, e.ID, nil)
		if err != nil || !bytes.Equal(got, want[e.ID]) {
			t.Fatalf("blob %s from its new copy alone: %v", e.ID.Short(), err)
		}
		for _, l := range r.Index().Locations(e.ID) {
			if !old[l.Pack] {
				copied = append(copied, l)
			}
		}
	}
	if len(copied) != len(blobs) {
		t.Fatalf("%d new copies of %d blobs", len(copied), len(blobs))
	}

	// The new copies damaged, and no other: CopyBlobs fails, naming a blob.
	newPack := copied[0].Pack
	var inNew []index.Entry
	for _, l := range copied {
		if l.Pack == newPack {
			inNew = append(inNew, l)
		}
	}
	flip(newPack, inNew)
	r, _ = openLogged(t, dir)
	err := r.CopyBlobs(ctx, newPack, slices.Clone(inNew))
	if err == nil || !strings.Contains(err.Error(), "cannot be read from any pack") {
		t.Fatalf("CopyBlobs with every copy damaged or gone: %v", err)
	}
}

// TestCopyBlobsChecksRawLength: repack copies a compressed blob's sealed
// bytes without decoding them, and its new pack's header gets the index
// entry's RawLength. An entry whose RawLength is not what the blob decodes
// to (a damaged index) must fail the copy, as it fails a read, so that the
// pack whose header has the right length is kept: a large blob, whose
// frame states its size, and a small one, whose frame may not.
func TestCopyBlobsChecksRawLength(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	var text []byte
	for i := 0; len(text) < 200_000; i++ {
		text = fmt.Appendf(text, "line %d of a table that compresses well\n", i)
	}
	blobs := [][]byte{text, bytes.Repeat([]byte("nestguard "), 40)}
	var entries []index.Entry
	for _, d := range blobs {
		bid, _, err := r.SaveBlob(ctx, index.DataBlob, d)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		e, _ := r.Index().Lookup(bid)
		if e.Length >= e.RawLength {
			t.Fatalf("blob of %d bytes stored in %d: not compressed", e.RawLength, e.Length)
		}
		entries = append(entries, e)
	}
	r = reopen(t, be)
	for _, e := range entries {
		for _, n := range []uint32{e.RawLength + 1, e.RawLength - 1} {
			bad := e
			bad.RawLength = n
			err := r.CopyBlobs(ctx, e.Pack, []index.Entry{bad})
			if err == nil || !strings.Contains(err.Error(), "cannot be read from any pack") {
				t.Fatalf("CopyBlobs of a %d-byte blob the index says has %d bytes: %v", e.RawLength, n, err)
			}
		}
		if err := r.CopyBlobs(ctx, e.Pack, []index.Entry{e}); err != nil {
			t.Fatalf("CopyBlobs of a %d-byte blob: %v", e.RawLength, err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r = reopen(t, be)
	for i, e := range entries {
		locs := r.Index().Locations(e.ID)
		if len(locs) != 2 {
			t.Fatalf("blob %s: %d copies, want the original and one", e.ID.Short(), len(locs))
		}
		for _, l := range locs {
			if l.RawLength != e.RawLength {
				t.Fatalf("blob %s in pack %s: RawLength %d, want %d", e.ID.Short(), l.Pack.Short(), l.RawLength, e.RawLength)
			}
		}
		got, err := r.LoadBlob(ctx, e.ID, nil)
		if err != nil || !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob %s: %v", e.ID.Short(), err)
		}
	}
}
