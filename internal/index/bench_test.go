package index

import (
	"runtime"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
)

func BenchmarkMapMemory(b *testing.B) {
	const n, packs = 1_000_000, 50_000
	var mem, heap int
	for b.Loop() {
		_, mem, heap = measureMap(n, packs)
	}
	b.ReportMetric(float64(mem)/n, "B/blob")
	b.ReportMetric(float64(heap)/n, "heap-B/blob")
}

// BenchmarkMapMemoryDuplicates is BenchmarkMapMemory with 1% of the
// blobs in two packs.
func BenchmarkMapMemoryDuplicates(b *testing.B) {
	const n, packs = 1_000_000, 50_000
	var mem, heap int
	for b.Loop() {
		r := newRand(9)
		ids := randIDs(r, packs)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := NewMap()
		fillMapDup(m, r, n, ids, 1)
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(ids)
		mem, heap = m.MemoryBytes(), int(after.HeapAlloc-before.HeapAlloc)
	}
	b.ReportMetric(float64(mem)/n, "B/blob")
	b.ReportMetric(float64(heap)/n, "heap-B/blob")
}

func BenchmarkAdd(b *testing.B) {
	r := newRand(10)
	packs := randIDs(r, 50_000)
	m := NewMap()
	i := 0
	for b.Loop() {
		// 20 blobs per pack, as in 16 MiB packs of 1 MiB chunks.
		m.Add(randEntry(r, packs[i/20%len(packs)]))
		i++
	}
}

// probedMap is a map of a million blobs in 50,000 packs, and
// 65536 of its blob IDs in random order.
func probedMap() (*Map, []id.ID) {
	const n = 1_000_000
	r := newRand(11)
	m := NewMap()
	fillMap(m, r, n, randIDs(r, n/20))
	probe := make([]id.ID, 0, 1<<16)
	m.Each(func(e Entry) bool {
		probe = append(probe, e.ID)
		return len(probe) < cap(probe)
	})
	r.Shuffle(len(probe), func(i, j int) { probe[i], probe[j] = probe[j], probe[i] })
	return m, probe
}

func BenchmarkLookup(b *testing.B) {
	m, probe := probedMap()
	i := 0
	for b.Loop() {
		if !m.Has(probe[i&(len(probe)-1)]) {
			b.Fatal("known blob not found")
		}
		i++
	}
}

func BenchmarkLocations(b *testing.B) {
	m, probe := probedMap()
	i := 0
	for b.Loop() {
		if len(m.Locations(probe[i&(len(probe)-1)])) != 1 {
			b.Fatal("known blob not found once")
		}
		i++
	}
}
