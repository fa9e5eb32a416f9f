package directio

import (
	"bytes"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/nestguard/nestguard/internal/hugemem"
)

// TestFiller writes a file in pieces cut at random offsets (some inside
// one page, some page-aligned, one past fillBlock), in random order from
// four goroutines, some pieces left out as a restore leaves zero blocks
// out, from memory placed as in the file or not, and reads back exactly
// the pieces written and zeros elsewhere.
func TestFiller(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for round := range 6 {
		size := int64(3<<20 + rng.IntN(3*Align))
		if round == 0 {
			size = 3 << 20 // ends on a page
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		cuts := []int64{0, size}
		for range 40 {
			switch c := rng.Int64N(size); rng.IntN(3) {
			case 0:
				cuts = append(cuts, c&^(Align-1)) // on a page
			default:
				cuts = append(cuts, c)
			}
		}
		cuts = append(cuts, 100, 200, 4000, 4100) // pieces inside one page, and across one boundary
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
		if round == 1 {
			cuts = []int64{0, 7, fillBlock + 3*Align + 5, size} // a piece longer than a direct write
		}
		type piece struct{ off, end int64 }
		var pieces []piece
		for i := 1; i < len(cuts); i++ {
			pieces = append(pieces, piece{cuts[i-1], cuts[i]})
		}
		rng.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
		want := bytes.Clone(data)
		// The pieces' memory in the same place within its pages as in
		// the file (their whole pages written from it) in even rounds,
		// a byte off (copied into aligned buffers) in odd ones.
		mem := make([]byte, size+Align)
		src := mem[Shift(mem, round%2):][:size]
		copy(src, data)
		f, err := os.CreateTemp(t.TempDir(), "f")
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		var pool hugemem.Pool
		w, ok := NewFiller(f, size, &pool)
		if !ok {
			t.Skip("this file system takes no direct writes")
		}
		var wg sync.WaitGroup
		ch := make(chan piece)
		for range 4 {
			wg.Go(func() {
				for p := range ch {
					if err := w.WriteAt(src[p.off:p.end], p.off); err != nil {
						t.Error(err)
					}
				}
			})
		}
		for i, p := range pieces {
			if i%7 == 3 && round != 1 { // left out: reads back as zeros
				clear(want[p.off:p.end])
				continue
			}
			ch <- p
		}
		close(ch)
		wg.Wait()
		if err := w.WriteAt([]byte{1}, size); err == nil {
			t.Error("a write past the file's size was taken")
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		pool.Close()
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if !bytes.Equal(got, want) {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Fatalf("round %d: read back %d bytes, want %d; first difference at %d", round, len(got), len(want), i)
		}
	}
}

func TestShift(t *testing.T) {
	mem := make([]byte, 3*Align)
	for _, start := range []int{0, 1, 17, Align - 1, Align, Align + 5} {
		p := mem[start:]
		for _, at := range []int{0, 1, 25, Align - 1} {
			i := Shift(p, at)
			if i < 0 || i >= Align {
				t.Fatalf("Shift(p at +%d, %d) = %d, outside [0, %d)", start, at, i, Align)
			}
			if got := int(uintptr(unsafe.Pointer(&p[i])) % Align); got != at {
				t.Errorf("Shift(p at +%d, %d) = %d: p[%d] is at %d within its page", start, at, i, i, got)
			}
		}
		if !Aligned(p[Shift(p, 0):]) || Aligned(p[Shift(p, 1):]) {
			t.Errorf("Aligned disagrees with Shift at +%d", start)
		}
	}
}
