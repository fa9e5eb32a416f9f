// Command limits measures what bounds nestguard's speed on this machine:
// the rate at which one core does each step a backup and a restore apply
// to every byte (chunking, the blob ID, compression, sealing, the pack
// hash, the kernel's copies in and out of the page cache), and the disk's
// sequential rates. From them it prints the machine's limit for a data
// set: the per-byte CPU cost summed over the pipeline and divided over the
// cores, against the disk reading the source and writing the repository at
// the same time. See docs/benchmarks.md ("The machine's limit").
//
//	go run ./bench/limits -dir /srv/bench                 # incompressible and text-like data
//	go run ./bench/limits -dir /srv/bench -data pgdata=DIR  # and a sample of a data set
//	go run ./bench/limits -dir /srv/bench -tsv limits.tsv   # and key/value lines for bench/compare
//
// CPU steps are timed by the thread's CPU clock (a step that other
// processes delay is not charged for the wait), each the median of three
// passes over -mib MiB in 1 MiB pieces (the average chunk). Disk steps are
// timed by the wall clock over -disk-mib MiB, written as nestguard writes
// packs (past the page cache in 4 MiB blocks where the file system takes
// that, else fsynced and dropped from it every 16 MiB), read after the
// file's pages are dropped from the page cache.
package main

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/chunker"
	"github.com/nestguard/nestguard/internal/compress"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/directio"
	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/id"
)

const (
	piece    = 1 << 20  // the average chunk
	packSize = 16 << 20 // fsync interval of the disk steps, a pack
)

type dataSet struct {
	name string
	dir  string // "" for generated data
	data []byte
}

type setsFlag []dataSet

func (s *setsFlag) String() string { return "" }
func (s *setsFlag) Set(v string) error {
	name, dir, ok := strings.Cut(v, "=")
	if !ok || name == "" || dir == "" {
		return fmt.Errorf("-data wants NAME=DIR, got %q", v)
	}
	*s = append(*s, dataSet{name: name, dir: dir})
	return nil
}

func main() {
	dir := flag.String("dir", os.TempDir(), "a directory on the disk to measure (the work directory)")
	mib := flag.Int("mib", 256, "MiB of data each CPU step is timed over")
	diskMiB := flag.Int("disk-mib", 2048, "MiB written and read for the disk's rates (more than the disk's own caches); 0 skips the disk")
	cores := flag.Int("cores", runtime.NumCPU(), "cores the CPU cost is divided over")
	tsv := flag.String("tsv", "", "also write the results as KEY<tab>VALUE lines to this file")
	chunkOnly := flag.Bool("chunker", false, "only time the chunker, -mib MiB of random data, and print MB/s per core (to compare builds)")
	var sets setsFlag
	flag.Var(&sets, "data", "NAME=DIR: a data set whose first -mib MiB (files in path order) give the compressible rates (repeatable)")
	flag.Parse()
	if *mib < 16 || *cores < 1 || *diskMiB < 0 {
		fmt.Fprintln(os.Stderr, "limits: -mib must be at least 16, -cores at least 1, -disk-mib not negative")
		os.Exit(2)
	}
	if *chunkOnly {
		r, err := chunkerRate(randomData(*mib<<20), [32]byte{1})
		if err != nil {
			fmt.Fprintln(os.Stderr, "limits:", err)
			os.Exit(1)
		}
		fmt.Printf("chunker %.0f MB/s\n", r/1e6)
		return
	}
	if err := run(*dir, *mib, *diskMiB, *cores, *tsv, sets); err != nil {
		fmt.Fprintln(os.Stderr, "limits:", err)
		os.Exit(1)
	}
}

// results are the measured rates, in bytes per second, by key.
type results struct {
	keys []string
	vals map[string]float64
}

func (r *results) set(k string, v float64) {
	if _, ok := r.vals[k]; !ok {
		r.keys = append(r.keys, k)
	}
	r.vals[k] = v
}

func run(dir string, mib, diskMiB, cores int, tsv string, sets setsFlag) error {
	n := mib << 20
	all := append([]dataSet{{name: "random", data: randomData(n)}, {name: "text", data: textData(n)}}, sets...)
	for i := range all {
		if all[i].data != nil {
			continue
		}
		d, err := sample(all[i].dir, n)
		if err != nil {
			return fmt.Errorf("data set %s: %w", all[i].name, err)
		}
		all[i].data = d
	}
	res := &results{vals: map[string]float64{}}
	res.set("cores", float64(cores))
	k, err := crypto.NewKey()
	if err != nil {
		return err
	}
	defer k.Close()
	m := &meter{key: k, codec: compress.NewCodec(compress.Default), dir: dir}
	if err := m.cpuSteps(res, all); err != nil {
		return err
	}
	if diskMiB > 0 {
		if err := m.diskSteps(res, int64(diskMiB)<<20); err != nil {
			return err
		}
	}
	limits(res, all, cores)
	printMarkdown(os.Stdout, res, all, cores, mib, diskMiB)
	if tsv != "" {
		var b strings.Builder
		for _, key := range res.keys {
			fmt.Fprintf(&b, "%s\t%.6g\n", key, res.vals[key])
		}
		if err := os.WriteFile(tsv, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

type meter struct {
	key   *crypto.Key
	codec *compress.Codec
	dir   string
}

// cpuRate runs pass three times on this goroutine's thread and returns the
// median of bytes per CPU second.
func cpuRate(bytes int, pass func() error) (float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var rates []float64
	for range 3 {
		start := threadCPU()
		if err := pass(); err != nil {
			return 0, err
		}
		d := threadCPU() - start
		if d <= 0 {
			d = time.Microsecond
		}
		rates = append(rates, float64(bytes)/d.Seconds())
	}
	sort.Float64s(rates)
	return rates[1], nil
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err) // Linux always has it
	}
	return time.Duration(ts.Nano())
}

func pieces(data []byte, fn func(p []byte)) {
	for off := 0; off < len(data); off += piece {
		fn(data[off:min(len(data), off+piece)])
	}
}

// cpuSteps measures every per-byte step on each data set (the steps whose
// cost does not depend on the data, on the first set only).
func (m *meter) cpuSteps(res *results, sets []dataSet) error {
	rnd := sets[0].data
	n := len(rnd)
	buf := make([]byte, 0, compress.Bound(piece)+64)

	// The kernel's copies: reads of a file in the page cache, and writes
	// into it (write-back happens later, on the kernel's threads).
	f, err := os.CreateTemp(m.dir, "limits-cache-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	write, err := cpuRate(n, func() error {
		// New pages each pass, as a new pack's.
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		var werr error
		pieces(rnd, func(p []byte) {
			if werr == nil {
				_, werr = f.Write(p)
			}
		})
		return werr
	})
	if err != nil {
		return fmt.Errorf("page cache write: %w", err)
	}
	res.set("rate.write_cached", write)
	rbuf := make([]byte, piece)
	read, err := cpuRate(n, func() error {
		for off := int64(0); off < int64(n); {
			k, err := f.ReadAt(rbuf, off)
			off += int64(k)
			if err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("page cache read: %w", err)
	}
	res.set("rate.read_cached", read)

	chunk, err := chunkerRate(rnd, m.key.ChunkerSeed())
	if err != nil {
		return fmt.Errorf("chunker: %w", err)
	}
	res.set("rate.chunker", chunk)

	hmacRate, _ := cpuRate(n, func() error { pieces(rnd, func(p []byte) { m.key.BlobID(p) }); return nil })
	res.set("rate.id_hmac_sha256", hmacRate)
	b3, err := m.key.BlobIDFunc(crypto.BlobIDBLAKE3)
	if err != nil {
		return err
	}
	b3Rate, _ := cpuRate(n, func() error { pieces(rnd, func(p []byte) { b3(p) }); return nil })
	res.set("rate.id_blake3", b3Rate)
	// The pack hash: the object ID of the stored bytes, BLAKE3 by default
	// and SHA-256 beside HMAC-SHA-256 blob IDs.
	for _, alg := range []struct{ key, name string }{{"rate.pack_blake3", id.BLAKE3}, {"rate.pack_sha256", id.SHA256}} {
		hasher, err := id.NewHasher(alg.name)
		if err != nil {
			return err
		}
		rate, _ := cpuRate(n, func() error {
			h := hasher.New()
			pieces(rnd, func(p []byte) { h.Write(p) })
			h.Sum(nil)
			return nil
		})
		res.set(alg.key, rate)
	}
	copyRate, _ := cpuRate(n, func() error {
		pieces(rnd, func(p []byte) { buf = append(buf[:0], p...) })
		return nil
	})
	res.set("rate.copy", copyRate)

	// Sealing, as a blob is sealed: in place, after a prefix for the nonce
	// (each pass seals the buffer's bytes again: the cost is the same).
	pre := m.key.SealPrefix()
	sbuf := make([]byte, pre+piece, pre+piece+m.key.Overhead())
	copy(sbuf[pre:], rnd)
	ad := make([]byte, 34)
	var serr error
	seal, _ := cpuRate(n, func() error {
		pieces(rnd, func(p []byte) {
			if _, err := m.key.SealInPlace(sbuf[:pre+len(p)], ad); err != nil && serr == nil {
				serr = err
			}
		})
		return serr
	})
	if serr != nil {
		return serr
	}
	res.set("rate.seal_xaes", seal)
	sealed, err := m.key.Seal(nil, rnd[:piece], ad)
	if err != nil {
		return err
	}
	obuf := make([]byte, len(sealed))
	var oerr error
	open, _ := cpuRate(n, func() error {
		pieces(rnd, func([]byte) {
			copy(obuf, sealed)
			if _, err := m.key.OpenInPlace(obuf, ad); err != nil && oerr == nil {
				oerr = err
			}
		})
		return oerr
	})
	if oerr != nil {
		return oerr
	}
	res.set("rate.open_xaes", open)
	fk, err := crypto.NewKeyFor(crypto.SuiteFIPS)
	if err != nil {
		return err
	}
	defer fk.Close()
	fpre := fk.SealPrefix()
	fbuf := make([]byte, fpre+piece, fpre+piece+fk.Overhead())
	fseal, _ := cpuRate(n, func() error {
		pieces(rnd, func(p []byte) {
			if _, err := fk.SealInPlace(fbuf[:fpre+len(p)], ad); err != nil && serr == nil {
				serr = err
			}
		})
		return serr
	})
	if serr != nil {
		return serr
	}
	res.set("rate.seal_fips", fseal)
	block, _ := aes.NewCipher(make([]byte, 32))
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	gbuf := make([]byte, 0, piece+gcm.Overhead())
	gcmRate, _ := cpuRate(n, func() error {
		pieces(rnd, func(p []byte) { gbuf = gcm.Seal(gbuf[:0], nonce, p, nil) })
		return nil
	})
	res.set("rate.aes_gcm", gcmRate)

	// Compression depends on the data: each set's rate, the stored share
	// (what the steps after it see), and decompression.
	for _, s := range sets {
		zr, _ := cpuRate(len(s.data), func() error {
			pieces(s.data, func(p []byte) { m.codec.Compress(buf[:0], p) })
			return nil
		})
		res.set("rate.compress."+s.name, zr)
		var in, out int
		var z [][]byte
		pieces(s.data, func(p []byte) {
			c, ok := m.codec.Compress(buf[:0], p)
			in += len(p)
			if ok {
				out += len(c)
				z = append(z, slices.Clone(c))
			} else {
				out += len(p) // stored raw
			}
		})
		res.set("ratio."+s.name, float64(out)/float64(in))
		if len(z) == 0 {
			continue
		}
		raw := len(z) * piece // n is whole pieces
		dbuf := make([]byte, 0, piece)
		var derr error
		dr, _ := cpuRate(raw, func() error {
			for _, c := range z {
				if dbuf, derr = m.codec.Decompress(dbuf[:0], c, piece); derr != nil {
					return derr
				}
			}
			return nil
		})
		if derr != nil {
			return fmt.Errorf("decompressing %s: %w", s.name, derr)
		}
		res.set("rate.decompress."+s.name, dr)
	}
	return nil
}

// chunkerRate splits data with the default sizes, as a backup does (into a
// reused buffer), and returns bytes per CPU second.
func chunkerRate(data []byte, seed [32]byte) (float64, error) {
	return cpuRate(len(data), func() error {
		s := chunker.New(bytes.NewReader(data), chunker.DefaultParams(), seed)
		cb := make([]byte, 0, 2*piece)
		for {
			c, err := s.Next(cb)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			cb = c[:0]
		}
	})
}

// diskSteps measures sequential writes (fsync every pack), reads of what
// is not in the page cache, and both at once: reading one file while
// writing another, as a backup reads its source and writes its
// repository on the same disk, and a restore the other way round.
func (m *meter) diskSteps(res *results, size int64) error {
	a := filepath.Join(m.dir, "limits-disk-a")
	b := filepath.Join(m.dir, "limits-disk-b")
	defer os.Remove(a)
	defer os.Remove(b)
	data := randomData(piece)
	start := time.Now()
	if err := writeSynced(a, size, func(p []byte) { copy(p, data) }); err != nil {
		return fmt.Errorf("disk write: %w", err)
	}
	res.set("disk.write", float64(size)/time.Since(start).Seconds())
	if err := directio.Evict(a); err != nil {
		return err
	}
	// The reads' CPU cost too: on a virtual machine a buffered read of
	// data not cached costs far more than one from the page cache (pages
	// allocated and filled), and a direct read little.
	runtime.LockOSThread()
	start, cpu0 := time.Now(), threadCPU()
	if err := readAll(a, func([]byte) {}); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("disk read: %w", err)
	}
	res.set("disk.read", float64(size)/time.Since(start).Seconds())
	res.set("rate.read_cold", float64(size)/(threadCPU()-cpu0).Seconds())
	runtime.UnlockOSThread()
	if err := directio.Evict(a); err != nil {
		return err
	}
	if err := directReadRate(res, a, size); err != nil {
		return err
	}
	if err := directio.Evict(a); err != nil {
		return err
	}
	// Copy: a reader and a writer, a few pieces apart. As nestguard reads
	// large files and packs, past the page cache where the file system
	// allows it (into page-aligned buffers); the writer writes as
	// nestguard writes packs (syncedFile).
	ch := make(chan []byte, 4)
	free := make(chan []byte, 6)
	for range cap(free) {
		free <- hugemem.Alloc(piece).Bytes()
	}
	rerr := make(chan error, 1)
	start = time.Now()
	go func() {
		defer close(ch)
		f, err := os.Open(a)
		if err != nil {
			rerr <- err
			return
		}
		defer f.Close()
		df, _ := directio.OpenSame(f, a) // nil: through the page cache
		rd := directio.NewReader(f, df)
		defer rd.Close()
		var off int64
		for {
			p := <-free
			k, err := rd.ReadBlock(p, off)
			off += int64(k)
			if k > 0 {
				ch <- p[:k]
			}
			if err != nil {
				rerr <- err
				return
			}
			if k < len(p) {
				rerr <- nil
				return
			}
		}
	}()
	werr := copySynced(b, ch, free)
	if err := errors.Join(<-rerr, werr); err != nil {
		return fmt.Errorf("disk copy: %w", err)
	}
	res.set("disk.copy", float64(size)/time.Since(start).Seconds())
	return nil
}

// directReadRate reads path with O_DIRECT in 4 MiB reads, as nestguard
// reads large files, and records the CPU rate (a file system that takes
// no direct reads records nothing).
func directReadRate(res *results, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	raw := make([]byte, 4<<20+4096)
	skip := int((4096 - uintptr(unsafe.Pointer(&raw[0]))%4096) % 4096)
	buf := raw[skip : skip+4<<20]
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, cpu0 := time.Now(), threadCPU()
	var off int64
	for off < size {
		n, err := unix.Pread(int(f.Fd()), buf, off)
		if err != nil {
			return fmt.Errorf("direct read: %w", err)
		}
		if n == 0 {
			break
		}
		off += int64(n)
	}
	res.set("disk.read_direct", float64(off)/time.Since(start).Seconds())
	res.set("rate.read_direct", float64(off)/(threadCPU()-cpu0).Seconds())
	return nil
}

func writeSynced(path string, size int64, fill func([]byte)) error {
	w, err := createSynced(path)
	if err != nil {
		return err
	}
	p := make([]byte, piece)
	for off := int64(0); off < size; off += piece {
		fill(p)
		if err := w.write(p[:min(int64(piece), size-off)]); err != nil {
			w.abort()
			return err
		}
	}
	return w.finish()
}

func copySynced(path string, ch <-chan []byte, free chan<- []byte) error {
	w, err := createSynced(path)
	for p := range ch {
		if err == nil {
			if err = w.write(p); err != nil {
				w.abort()
			}
		}
		free <- p[:cap(p)]
	}
	if err != nil {
		return err
	}
	return w.finish()
}

// syncedFile writes a file as nestguard writes its packs: past the page
// cache where the file system takes that (directio.Writer, 4 MiB
// blocks), else through it, synced and dropped from it every pack.
type syncedFile struct {
	f    *os.File
	dw   *directio.Writer
	pool hugemem.Pool
	done int64
}

func createSynced(path string) (*syncedFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	s := &syncedFile{f: f}
	s.dw, _ = directio.NewWriter(f, &s.pool, 4<<20)
	return s, nil
}

func (s *syncedFile) write(p []byte) error {
	if s.dw != nil {
		_, err := s.dw.Write(p)
		return err
	}
	if _, err := s.f.Write(p); err != nil {
		return err
	}
	s.done += int64(len(p))
	if s.done%packSize == 0 {
		return syncUncached(s.f)
	}
	return nil
}

func (s *syncedFile) finish() error {
	defer s.pool.Close()
	if s.dw != nil {
		if err := s.dw.Close(); err != nil {
			s.f.Close()
			return err
		}
	}
	if err := syncUncached(s.f); err != nil {
		s.f.Close()
		return err
	}
	return s.f.Close()
}

func (s *syncedFile) abort() {
	if s.dw != nil {
		s.dw.Abort()
	}
	s.f.Close()
	s.pool.Close()
}

// syncUncached fsyncs f and drops its pages from the page cache, as
// nestguard does with a pack once it is durable: on a virtual machine the
// fresh pages a growing page cache takes cost more than the writes.
func syncUncached(f *os.File) error {
	if err := f.Sync(); err != nil {
		return err
	}
	return directio.Uncache(f)
}

func readAll(path string, fn func([]byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	p := make([]byte, piece)
	for {
		k, err := f.Read(p)
		fn(p[:k])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// limits adds, for each data set, the per-core CPU rate of a backup and a
// restore (one over the summed per-byte costs of their steps), the CPU
// limit over all cores, the disk's, and the lower of the two; and the
// same with HMAC-SHA-256 blob IDs and SHA-256 object IDs (a FIPS
// repository's, or --id-hash hmac-sha256) instead of the default keyed
// BLAKE3 and BLAKE3.
func limits(res *results, sets []dataSet, cores int) {
	v := res.vals
	cost := func(k string) float64 { return 1 / v[k] }
	for _, s := range sets {
		ratio := v["ratio."+s.name]
		for _, idk := range []string{"id_blake3", "id_hmac_sha256"} {
			suffix, packHash := "", "rate.pack_blake3"
			if idk == "id_hmac_sha256" {
				suffix, packHash = "_hmac", "rate.pack_sha256"
			}
			// Backup: read the file, chunk it (the chunker copies it
			// into the chunk's buffer), hash it, compress it (or give up
			// on samples), seal it out of the chunk's buffer (or the
			// compressor's), hash the pack and copy what is stored into
			// the pack's blocks, which are written past the page cache.
			// Reads: direct, as nestguard reads files of 64 MiB or more
			// and packs, when the disk step measured it.
			read := cost("rate.read_cached")
			if d, ok := v["rate.read_direct"]; ok {
				read = 1 / d
			}
			b := read + cost("rate.chunker") + cost("rate."+idk) + cost("rate.compress."+s.name)
			b += ratio * (cost("rate.seal_xaes") + cost(packHash) + cost("rate.copy"))
			// Restore: read the pack, open, decompress, verify the ID,
			// write the file.
			r := ratio*(read+cost("rate.open_xaes")) + cost("rate."+idk) + cost("rate.write_cached")
			if d, ok := v["rate.decompress."+s.name]; ok && ratio < 1 {
				r += 1 / d
			}
			for _, op := range []struct {
				name string
				c    float64
			}{{"backup", b}, {"restore", r}} {
				core := 1 / op.c
				res.set(op.name+".cpu_core"+suffix+"."+s.name, core)
				res.set(op.name+".cpu"+suffix+"."+s.name, core*float64(cores))
				lim := core * float64(cores)
				// The disk moves the source's bytes one way and the
				// stored bytes the other, at the rate it copies.
				// (Compressed data writes less than it reads: the copy
				// rate, equal bytes both ways, is then a lower bound.)
				if d, ok := v["disk.copy"]; ok {
					res.set(op.name+".disk."+s.name, d)
					lim = min(lim, d)
				}
				res.set(op.name+".limit"+suffix+"."+s.name, lim)
			}
		}
	}
}

func mbs(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MB/s", v/1e6)
}

func printMarkdown(w io.Writer, res *results, sets []dataSet, cores, mib, diskMiB int) {
	v := res.vals
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "**Per-byte steps, one core** (thread CPU time, median of 3 passes over %d MiB in 1 MiB pieces; "+
		"compression: nestguard's `default` level, %s):\n\n", mib, compress.Implementation)
	fmt.Fprintln(bw, "| step | rate on one core | ns per byte |")
	fmt.Fprintln(bw, "| --- | --- | --- |")
	names := []struct{ key, desc string }{
		{"rate.read_cached", "read(2) from the page cache"},
		{"rate.read_cold", "read(2) of data not cached (1 MiB reads, the kernel's readahead)"},
		{"rate.read_direct", "pread(2) with O_DIRECT, 4 MiB (nestguard's reads of large files)"},
		{"rate.chunker", "chunker (FastCDC, 512 KiB / 1 MiB / 8 MiB, with its copy)"},
		{"rate.id_blake3", "blob ID: keyed BLAKE3 (default)"},
		{"rate.id_hmac_sha256", "blob ID: HMAC-SHA-256 (`init --fips`, `--id-hash hmac-sha256`)"},
		{"rate.copy", "copy into a pack's write block (memmove)"},
		{"rate.seal_xaes", "seal: XAES-256-GCM in place (default)"},
		{"rate.open_xaes", "open: XAES-256-GCM in place"},
		{"rate.seal_fips", "seal: AES-256-GCM-HKDF-SHA-256 (`init --fips`)"},
		{"rate.aes_gcm", "AES-256-GCM alone (crypto/cipher)"},
		{"rate.pack_blake3", "pack hash: BLAKE3 (default)"},
		{"rate.pack_sha256", "pack hash: SHA-256 (`init --fips`, `--id-hash hmac-sha256`)"},
		{"rate.write_cached", "write(2) into the page cache"},
	}
	for _, s := range sets {
		names = append(names, struct{ key, desc string }{"rate.compress." + s.name,
			fmt.Sprintf("compress %s (stored %.1f%%)", s.name, 100*v["ratio."+s.name])})
		if _, ok := v["rate.decompress."+s.name]; ok {
			names = append(names, struct{ key, desc string }{"rate.decompress." + s.name, "decompress " + s.name})
		}
	}
	for _, n := range names {
		if _, ok := v[n.key]; !ok {
			continue
		}
		fmt.Fprintf(bw, "| %s | %s | %.3f |\n", n.desc, mbs(v[n.key]), 1e9/v[n.key])
	}
	if diskMiB > 0 {
		fmt.Fprintf(bw, "\n**Disk** (wall clock, %d MiB written as nestguard writes packs: past the page cache in 4 MiB blocks where the file system takes that; reads after the pages were dropped): "+
			"write %s, read %s (O_DIRECT, 4 MiB reads: %s), read one file (O_DIRECT, 1 MiB reads) while writing another %s.\n", diskMiB,
			mbs(v["disk.write"]), mbs(v["disk.read"]), mbs(v["disk.read_direct"]), mbs(v["disk.copy"]))
	}
	fmt.Fprintf(bw, "\n**The limit on %d cores**: the CPU rate is one over the per-byte costs summed over the pipeline, "+
		"times the cores; the disk's is its read-while-writing rate. Backup: read (O_DIRECT when the disk step measured it), chunk, blob ID, compress (or its "+
		"sampling, and a copy), then seal, pack hash and write of the stored bytes; restore: read and open the stored bytes, "+
		"decompress, verify the blob ID, write.\n\n", cores)
	fmt.Fprintln(bw, "| data | stored | backup: CPU per core | CPU, all cores | disk | **limit** | with SHA-256 family IDs | restore: CPU per core | CPU, all cores | **limit** | with SHA-256 family IDs |")
	fmt.Fprintln(bw, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, s := range sets {
		n := s.name
		fmt.Fprintf(bw, "| %s | %.1f%% | %s | %s | %s | **%s** | %s | %s | %s | **%s** | %s |\n", n, 100*v["ratio."+n],
			mbs(v["backup.cpu_core."+n]), mbs(v["backup.cpu."+n]), mbs(v["backup.disk."+n]), mbs(v["backup.limit."+n]),
			mbs(v["backup.limit_hmac."+n]),
			mbs(v["restore.cpu_core."+n]), mbs(v["restore.cpu."+n]), mbs(v["restore.limit."+n]), mbs(v["restore.limit_hmac."+n]))
	}
}

// randomData returns n incompressible bytes (deterministic).
func randomData(n int) []byte {
	r := rand.NewChaCha8([32]byte{'l', 'i', 'm', 'i', 't', 's'})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// textData returns n bytes of text-like data: lines of words from a
// generated vocabulary, as bench/compare's small set.
func textData(n int) []byte {
	r := rand.New(rand.NewPCG(20240601, 1))
	const letters = "etaoinshrdlcumwfgypbvkjxqz"
	words := make([]string, 5000)
	for i := range words {
		w := make([]byte, 2+r.IntN(9))
		for j := range w {
			w[j] = letters[r.IntN(len(letters))]
		}
		words[i] = string(w)
	}
	b := make([]byte, 0, n+256)
	for len(b) < n {
		k := 4 + r.IntN(11)
		for i := range k {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, words[r.IntN(len(words))]...)
		}
		b = append(b, '\n')
	}
	return b[:n]
}

// sample reads up to n bytes of the regular files under dir, in path
// order, end to end; a set smaller than n is repeated.
func sample(dir string, n int) ([]byte, error) {
	b := make([]byte, 0, n)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if len(b) >= n {
			return filepath.SkipAll
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		m, err := io.ReadFull(f, b[len(b):n])
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return err
		}
		b = b[:len(b)+m]
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("no data in %s", dir)
	}
	for len(b) < n {
		b = append(b, b[:min(len(b), n-len(b))]...)
	}
	return b, nil
}
