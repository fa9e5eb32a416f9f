package diskidx

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
)

// The sizes BenchmarkTable* run at: 10^6 unless NESTGUARD_DISKIDX_BENCH
// lists others (for example "1e6,1e7,1e8"; 10^8 takes 4.8 GB of disk
// twice while building, and little memory). NESTGUARD_DISKIDX_BENCH_DIR
// keeps the built files between runs (default: a temporary directory).
func benchSizes() []int {
	s := os.Getenv("NESTGUARD_DISKIDX_BENCH")
	if s == "" {
		s = "1e6"
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err == nil && v >= 1 {
			out = append(out, int(v))
		}
	}
	return out
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// synthID is the ID of synthetic blob i (or pack, with i >= 1<<40):
// uniform, as keyed hashes are, and computed rather than stored.
func synthID(i uint64) id.ID {
	var b id.ID
	x := i
	for k := 0; k < id.Size; k += 8 {
		x = splitmix(x)
		binary.LittleEndian.PutUint64(b[k:], x)
	}
	return b
}

// synthEntry is blob i of a repository of 1 MiB chunks in packs of 20.
func synthEntry(i uint64) index.Entry {
	return index.Entry{ID: synthID(i), Pack: synthID(1<<40 + i/20), Offset: uint32(i%20) << 20, Length: 1 << 20, RawLength: 1<<20 + 40}
}

// benchTable returns a table of n synthetic blobs, built or reused.
func benchTable(b *testing.B, n int) *Table {
	dir := os.Getenv("NESTGUARD_DISKIDX_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("bench-%d", n))
	if t, err := Open(path, testKey); err == nil && t.Len() == n {
		return t
	}
	start := time.Now()
	bl, err := NewBuilder(dir)
	if err != nil {
		b.Fatal(err)
	}
	for i := range uint64(n) {
		if err := bl.Add(synthEntry(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := bl.Finish(path, testKey, nil); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d blobs in %v", n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	t, err := Open(path, testKey)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("opened (checked) %d MB in %v", t.FileBytes()>>20, time.Since(start).Round(time.Millisecond))
	return t
}

// cpuTime returns the process's user and system CPU time: on a shared
// machine, CPU time per lookup varies less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs op b.N times and reports CPU ns per op besides wall time, and
// the memory then resident.
func loop(b *testing.B, op func(x uint64)) {
	x := uint64(12345)
	b.ResetTimer()
	c0 := cpuTime()
	n := 0
	for b.Loop() {
		x = splitmix(x)
		op(x)
		n++
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(n), "cpu-ns/op")
	reportRSS(b)
}

// reportRSS reports the process's resident memory, anonymous (the heap)
// and file-backed (mapped pages, which the kernel may drop) apart.
func reportRSS(b *testing.B) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var unit string
		switch k {
		case "VmRSS":
			unit = "RSS-MB"
		case "RssAnon":
			unit = "anon-MB"
		case "RssFile":
			unit = "file-MB"
		default:
			continue
		}
		kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		b.ReportMetric(float64(kb)/1024, unit)
	}
}

func BenchmarkTableLookup(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			t := benchTable(b, n)
			defer t.Close()
			loop(b, func(x uint64) {
				if _, ok := t.Lookup(synthID(x % uint64(n))); !ok {
					b.Fatal("known blob not found")
				}
			})
		})
	}
}

func BenchmarkTableMiss(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			t := benchTable(b, n)
			defer t.Close()
			loop(b, func(x uint64) {
				if t.Has(synthID(1<<50 + x)) {
					b.Fatal("unknown blob found")
				}
			})
		})
	}
}

// BenchmarkMapLookup is BenchmarkTableLookup for the in-memory index.Map,
// at the same sizes.
func BenchmarkMapLookup(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			m := index.NewMap()
			for i := range uint64(n) {
				m.Add(synthEntry(i))
			}
			loop(b, func(x uint64) {
				if _, ok := m.Lookup(synthID(x % uint64(n))); !ok {
					b.Fatal("known blob not found")
				}
			})
		})
	}
}

// BenchmarkSynthID is the cost of computing the probe, included in the
// lookups above.
func BenchmarkSynthID(b *testing.B) {
	x := uint64(1)
	var s id.ID
	for b.Loop() {
		x = splitmix(x)
		s = synthID(x)
	}
	_ = s
}
