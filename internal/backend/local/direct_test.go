package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/directio"
)

// TestDirectRanges: ranges of a pack not in the page cache are read past
// it, and give the same bytes as reads through it, for every alignment:
// unaligned starts and ends, several blocks, up to the end of the file,
// past it (the bytes that exist, then io.ErrUnexpectedEOF), a file
// truncated after it was opened. A range in the page cache is read
// through it.
func TestDirectRanges(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	size := 9<<20 + 3*4096 + 123
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(data)
	h := backend.Handle{Type: backend.PackFile, Name: "ab" + string(bytes.Repeat([]byte("0"), 62))}
	if err := b.Save(ctx, h, bytes.NewReader(data), int64(size)); err != nil {
		t.Fatal(err)
	}
	p, err := b.path(h)
	if err != nil {
		t.Fatal(err)
	}
	// evict drops the file's pages from the page cache.
	evict := func() {
		if err := directio.Evict(p); err != nil {
			t.Fatal(err)
		}
	}
	probe, err := directio.Open(p)
	directOK := err == nil
	if directOK {
		probe.Close()
	} else {
		t.Logf("this file system takes no direct reads (%v): the page cache path only", err)
	}
	for _, c := range []struct {
		name        string
		off, length int64
		short       bool // runs past the end
	}{
		{"whole", 0, 0, false},
		{"unaligned, several blocks", 5, 3*int64(directBlock) + 7, false},
		{"one page in", 4095, 1 << 20, false},
		{"to the end", int64(size) - 1<<20 - 3, 1<<20 + 3, false},
		{"from a block boundary to the end", int64(directBlock), int64(size - directBlock), false},
		{"past the end", int64(size) - 1<<20, 2 << 20, true},
		{"short range, page cache", 100, 1<<20 - 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			evict()
			before := b.directRanges.Load()
			rd, err := b.Load(ctx, h, c.off, c.length)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rd)
			rd.Close()
			end := min(c.off+c.length, int64(size))
			if c.length == 0 {
				end = int64(size)
			}
			if !bytes.Equal(got, data[c.off:end]) {
				t.Errorf("read %d bytes, not the %d at %d", len(got), end-c.off, c.off)
			}
			if c.short != errors.Is(err, io.ErrUnexpectedEOF) || (!c.short && err != nil) {
				t.Errorf("err = %v (range past the end: %v)", err, c.short)
			}
			wantDirect := directOK && (c.length == 0 || c.length >= directMin)
			if got := b.directRanges.Load() - before; (got == 1) != wantDirect {
				t.Errorf("%d direct ranges, want direct: %v", got, wantDirect)
			}
		})
	}

	t.Run("in the page cache", func(t *testing.T) {
		if _, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		before := b.directRanges.Load()
		rd, err := b.Load(ctx, h, 1, 5<<20)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rd)
		rd.Close()
		if err != nil || !bytes.Equal(got, data[1:1+5<<20]) {
			t.Errorf("read %d bytes, err %v", len(got), err)
		}
		if b.directRanges.Load() != before {
			t.Error("a range in the page cache was read directly")
		}
	})

	t.Run("truncated after opening", func(t *testing.T) {
		evict()
		rd, err := b.Load(ctx, h, 3, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		first := make([]byte, 10)
		if _, err := io.ReadFull(rd, first); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o600)
		if err := os.Truncate(p, int64(directBlock)+100); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(rd)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("err = %v, want io.ErrUnexpectedEOF", err)
		}
		got := append(first, rest...)
		if !bytes.Equal(got, data[3:3+len(got)]) || len(got) > directBlock+100-3 {
			t.Errorf("read %d bytes, not the file's first ones", len(got))
		}
	})
	b.Close()
	if b.direct.Len() != 0 {
		t.Error("Close kept buffers")
	}
}
