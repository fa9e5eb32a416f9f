package repository

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
)

func TestNamedObjects(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	seg := bytes.Repeat([]byte("wal record;"), 1<<20) // 11 MiB: compressed in parallel pieces
	const name = "000000010000000000000003"
	if err := r.SaveNamed(ctx, backend.WALFile, name, seg); err != nil {
		t.Fatal(err)
	}
	got, err := reopen(t, be).LoadNamed(ctx, backend.WALFile, name)
	if err != nil || !bytes.Equal(got, seg) {
		t.Fatalf("load: err=%v equal=%v", err, bytes.Equal(got, seg))
	}
	if err := r.SaveNamed(ctx, backend.WALFile, name, seg); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second save: %v, want fs.ErrExist", err)
	}
	if _, err := r.LoadNamed(ctx, backend.WALFile, "000000010000000000000004"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	// The same valid bytes under another name are refused: a segment cannot
	// be replayed in place of another.
	rd, err := be.Load(ctx, backend.Handle{Type: backend.WALFile, Name: name}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := io.ReadAll(rd)
	rd.Close()
	other := backend.Handle{Type: backend.WALFile, Name: "000000010000000000000009"}
	if err := be.Save(ctx, other, bytes.NewReader(sealed), int64(len(sealed))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadNamed(ctx, backend.WALFile, other.Name); !errors.Is(err, ErrObjectCorrupted) {
		t.Fatalf("renamed object: %v, want ErrObjectCorrupted", err)
	}
	if len(sealed) > len(seg)/4 {
		t.Errorf("compressible segment stored in %d of %d bytes", len(sealed), len(seg))
	}
}

// TestNamedObjectsStreamed: SaveNamedStream stores what SaveNamed would,
// compressed or (compression off) raw, and refuses a short reader and an
// existing name.
func TestNamedObjectsStreamed(t *testing.T) {
	ctx := context.Background()
	seg := randBytes(3, 5<<20)
	copy(seg[1<<20:], bytes.Repeat([]byte("wal record;"), 300_000))
	for _, compression := range []string{"fastest", "off"} {
		be, r := initCompression(t, compression)
		const name = "000000010000000000000003"
		if err := r.SaveNamedStream(ctx, backend.WALFile, name, bytes.NewReader(seg), len(seg)); err != nil {
			t.Fatalf("%s: %v", compression, err)
		}
		got, err := reopen(t, be).LoadNamed(ctx, backend.WALFile, name)
		if err != nil || !bytes.Equal(got, seg) {
			t.Fatalf("%s: load: err=%v equal=%v", compression, err, bytes.Equal(got, seg))
		}
		if err := r.SaveNamedStream(ctx, backend.WALFile, name, bytes.NewReader(seg), len(seg)); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("%s: second save: %v, want fs.ErrExist", compression, err)
		}
		const other = "000000010000000000000004"
		err = r.SaveNamedStream(ctx, backend.WALFile, other, bytes.NewReader(seg[:len(seg)-1]), len(seg))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s: short reader: %v, want io.ErrUnexpectedEOF", compression, err)
		}
		if _, err := r.LoadNamed(ctx, backend.WALFile, other); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: a short stream was stored: %v", compression, err)
		}
	}
}

// TestNamedObjectsLargeSegment: a WAL segment of more than 256 MiB
// (initdb --wal-segsize goes up to 1 GiB) stored as a named object loads
// back, compressed or raw: archive-wal must not exit 0 with an object
// restore-wal then refuses as too large.
func TestNamedObjectsLargeSegment(t *testing.T) {
	if testing.Short() {
		t.Skip("300 MiB objects")
	}
	ctx := context.Background()
	seg := bytes.Repeat([]byte("wal record;"), 300<<20/11)
	for _, compression := range []string{"fastest", "off"} {
		be, r := initCompression(t, compression)
		const name = "000000010000000000000003"
		if err := r.SaveNamedPieces(ctx, backend.WALFile, name, seg, nil); err != nil {
			t.Fatalf("%s: %v", compression, err)
		}
		got, err := reopen(t, be).LoadNamed(ctx, backend.WALFile, name)
		if err != nil || !bytes.Equal(got, seg) {
			t.Fatalf("%s: load: err=%v equal=%v", compression, err, bytes.Equal(got, seg))
		}
	}
}

// TestNamedPiecesCheck: SaveNamedPieces runs check once the bytes are
// compressed (or copied), and an error from it stores nothing.
func TestNamedPiecesCheck(t *testing.T) {
	ctx := context.Background()
	seg := bytes.Repeat([]byte("wal record;"), 1<<19)
	stop := errors.New("the file shrank")
	for _, compression := range []string{"fastest", "off"} {
		_, r := initCompression(t, compression)
		const name = "000000010000000000000003"
		calls := 0
		err := r.SaveNamedPieces(ctx, backend.WALFile, name, seg, func() error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("%s: %v after %d checks, want the check's error after 1", compression, err, calls)
		}
		if _, err := r.LoadNamed(ctx, backend.WALFile, name); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: stored although the check failed: %v", compression, err)
		}
	}
}

// initCompression is a new repository in memory with the compression
// given ("off", "fastest", ...).
func initCompression(t *testing.T, compression string) (backend.Backend, *Repository) {
	t.Helper()
	be := mem.New()
	r, err := Init(context.Background(), be, pass, InitOptions{Options: testOptions(), Compression: compression})
	if err != nil {
		t.Fatal(err)
	}
	return be, r
}
