package index

import (
	"runtime"
	"testing"
	"unsafe"
)

func TestSlotLayout(t *testing.T) {
	if n := unsafe.Sizeof(slot{}); n != 52 {
		t.Fatalf("slot is %d bytes, want 52 (no padding)", n)
	}
	// A page the allocator must round up would waste memory per page.
	if n := unsafe.Sizeof(page{}); n%8192 != 0 {
		t.Fatalf("page is %d bytes, not a multiple of the 8 KiB runtime page", n)
	}
}

// measureMap builds a Map of n random blobs over the given number of packs
// and returns its own size estimate and the heap it actually took.
func measureMap(n, packs int) (m *Map, memoryBytes, heapBytes int) {
	r := newRand(9)
	ids := randIDs(r, packs)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m = NewMap()
	fillMap(m, r, n, ids)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ids)
	return m, m.MemoryBytes(), int(after.HeapAlloc) - int(before.HeapAlloc)
}

func TestMapMemoryPerBlob(t *testing.T) {
	const n, packs = 200_000, 10_000
	m, mem, heap := measureMap(n, packs)
	if m.Len() != n {
		t.Fatalf("Len = %d, want %d", m.Len(), n)
	}
	perBlob := float64(mem) / float64(n)
	t.Logf("%d blobs in %d packs: MemoryBytes %d (%.1f B/blob), heap %d (%.1f B/blob)",
		n, packs, mem, perBlob, heap, float64(heap)/float64(n))
	if perBlob >= 64 {
		t.Errorf("MemoryBytes says %.1f bytes per blob, want < 64", perBlob)
	}
	if d := float64(heap-mem) / float64(mem); d < -0.15 || d > 0.15 {
		t.Errorf("MemoryBytes %d and heap growth %d differ by %.0f%%, want within 15%%", mem, heap, 100*d)
	}
}

// TestMapMemoryWithDuplicates: blobs in two packs cost their side-map
// entry, which MemoryBytes estimates, and nothing more for the others.
func TestMapMemoryWithDuplicates(t *testing.T) {
	const n, packs = 200_000, 10_000
	for _, dupPercent := range []int{0, 1, 10} {
		r := newRand(13)
		ids := randIDs(r, packs)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := NewMap()
		fillMapDup(m, r, n, ids, dupPercent)
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(ids)
		mem, heap := m.MemoryBytes(), int(after.HeapAlloc-before.HeapAlloc)
		t.Logf("%d%% of %d blobs in two packs: MemoryBytes %.1f B/blob, heap %.1f B/blob",
			dupPercent, n, float64(mem)/n, float64(heap)/n)
		if d := float64(heap-mem) / float64(mem); d < -0.15 || d > 0.15 {
			t.Errorf("%d%% duplicates: MemoryBytes %d and heap growth %d differ by %.0f%%, want within 15%%", dupPercent, mem, heap, 100*d)
		}
		if dupPercent <= 1 && float64(mem)/n >= 64 {
			t.Errorf("%d%% duplicates: %.1f bytes per blob, want < 64", dupPercent, float64(mem)/n)
		}
	}
}
