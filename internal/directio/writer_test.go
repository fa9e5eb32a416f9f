package directio

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/hugemem"
)

// writeAll writes data to a new file through a Writer in pieces of the
// given sizes (cycled), closes the Writer and returns the file's bytes.
func writeAll(t *testing.T, dir string, data []byte, pieces []int, block int) ([]byte, bool) {
	t.Helper()
	f, err := os.CreateTemp(dir, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pool hugemem.Pool
	defer pool.Close()
	w, ok := NewWriter(f, &pool, block)
	if !ok {
		return nil, false
	}
	for i, p := 0, data; len(p) > 0; i++ {
		n := min(pieces[i%len(pieces)], len(p))
		if m, err := w.Write(p[:n]); m != n || err != nil {
			t.Fatalf("Write of %d bytes: %d, %v", n, m, err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := w.Write([]byte{1}); err == nil {
		t.Error("a Write after Close succeeded")
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return got, true
}

func TestWriter(t *testing.T) {
	dir := t.TempDir()
	const block = 64 << 10
	data := make([]byte, 5*block+1234)
	rand.NewChaCha8([32]byte{3}).Read(data)
	for _, size := range []int{0, 1, Align - 1, Align, Align + 1, block - 1, block, block + 1, 3 * block, len(data)} {
		for _, pieces := range [][]int{{1 << 30}, {1000, 7, 70000}, {block}, {Align}} {
			got, ok := writeAll(t, dir, data[:size], pieces, block)
			if !ok {
				t.Skip("this file system takes no direct writes")
			}
			if !bytes.Equal(got, data[:size]) {
				t.Fatalf("%d bytes written in pieces of %v: read back %d bytes, not the same", size, pieces, len(got))
			}
		}
	}
}

// TestWriterFallback: a file system without O_DIRECT gets no Writer (the
// caller writes through the page cache), and blocks in heap memory (no
// mapping left) are written through the page cache between direct ones.
func TestWriterFallback(t *testing.T) {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		f, err := os.CreateTemp("/dev/shm", "nestguard-directio-*")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		var pool hugemem.Pool
		if w, ok := NewWriter(f, &pool, 1<<20); ok {
			w.Abort()
			t.Log("tmpfs took O_DIRECT; nothing to fall back from")
		}
	}
	f := tempFile(t)
	var pool hugemem.Pool
	w := newTestWriter(t, f, &pool, 8192)
	data := make([]byte, 5*8192+100)
	rand.NewChaCha8([32]byte{4}).Read(data)
	w.Write(data[:8192])
	w.cur = hugemem.Heap(8192) // as when no mapping is left
	w.Write(data[8192 : 2*8192])
	w.Write(data[2*8192:])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(f.Name()); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), not what was written", len(got), err)
	}
}

// TestWriterError: a failed block write is reported by Close (or a later
// Write), never lost.
func TestWriterError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p) // read-only: every write fails
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pool hugemem.Pool
	w := newTestWriter(t, f, &pool, 4096)
	w.Write(make([]byte, 3*4096+5))
	err = w.Close()
	if err == nil || !strings.Contains(err.Error(), "bad file descriptor") {
		t.Fatalf("Close after failed writes: %v", err)
	}
	w.Abort() // after Close: nothing
}

// TestWriterRefused: a direct write the file system refuses (EINVAL; here
// an unaligned offset, as a file system that opens with O_DIRECT and
// then refuses every direct write would) is written through the page
// cache, and so is every later block.
func TestWriterRefused(t *testing.T) {
	f := tempFile(t)
	var pool hugemem.Pool
	defer pool.Close()
	w := newTestWriter(t, f, &pool, 8192)
	buf, ok := pool.GetMapped(8192)
	if !ok {
		t.Skip("no mapped memory")
	}
	copy(buf.Bytes(), "refused")
	if err := w.write(writeJob{buf: buf, n: 7, off: 1}); err != nil {
		t.Fatalf("a refused direct write was not written through the page cache: %v", err)
	}
	pool.Put(buf)
	if w.direct {
		t.Error("direct writes go on after the file system refused one")
	}
	w.off = 8 // as if the 8 bytes so far had come through Write
	w.Write([]byte("and the rest"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(f.Name()); err != nil || string(got) != "\x00refusedand the rest" {
		t.Fatalf("read back %q (%v)", got, err)
	}
}

// tempFile returns a new empty file, closed when the test ends.
func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// newTestWriter is NewWriter, skipping the test where the file system
// takes no direct writes.
func newTestWriter(t *testing.T, f *os.File, pool *hugemem.Pool, block int) *Writer {
	t.Helper()
	w, ok := NewWriter(f, pool, block)
	if !ok {
		t.Skip("this file system takes no direct writes")
	}
	return w
}

// TestWriterLend: bytes filled in lent memory land in the file in order
// with written ones, across blocks (a block without room is written up to
// its last aligned byte and its tail starts the next), and a length no
// block can hold is refused without changing anything.
func TestWriterLend(t *testing.T) {
	const block = 64 << 10
	data := make([]byte, 40*block)
	rnd := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	for round := range 20 {
		f := tempFile(t)
		var pool hugemem.Pool
		w := newTestWriter(t, f, &pool, block)
		var want []byte
		for p := data; len(p) > 0; {
			n := min(len(p), rnd.IntN(block+Align))
			if round%4 == 0 {
				n = min(len(p), rnd.IntN(3*Align)) // small pieces, many in a block
			}
			switch room := w.Lend(n); {
			case n > block-Align && room != nil:
				t.Fatalf("lent %d bytes in blocks of %d", n, block)
			case room != nil:
				if len(room) != n || cap(room) != n {
					t.Fatalf("lent %d bytes (cap %d) for %d", len(room), cap(room), n)
				}
				copy(room, p[:n])
			case n <= block-Align:
				t.Fatalf("refused to lend %d bytes in blocks of %d", n, block)
			default:
				if _, err := w.Write(p[:n]); err != nil {
					t.Fatal(err)
				}
			}
			want = append(want, p[:n]...)
			p = p[n:]
			if rnd.IntN(3) == 0 && len(p) > 0 { // interleaved writes
				m := min(len(p), rnd.IntN(2*block))
				if _, err := w.Write(p[:m]); err != nil {
					t.Fatal(err)
				}
				want = append(want, p[:m]...)
				p = p[m:]
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if w.Lend(1) != nil {
			t.Error("a closed Writer lent memory")
		}
		pool.Close()
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: read back %d bytes, want %d, not the same", round, len(got), len(want))
		}
	}
}
