// Command indexscale measures the blob index at scale: it writes a
// repository of synthetic index objects (no packs: LoadIndex reads index
// objects only) and opens it as a command would, with the index in the
// local cache or in memory, reporting the time, the memory and the cost of
// lookups. See docs/benchmarks.md ("An index for 10^8 blobs").
//
//	go run ./bench/indexscale gen -repo DIR -blobs 1e8
//	go run ./bench/indexscale open -repo DIR -cache DIR [-lookups 1e6]
//	go run ./bench/indexscale open -repo DIR -cache ''   (in memory)
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
)

const passphrase = "indexscale"

// Shape of the synthetic repository: 1 MiB chunks, 20 to a pack, and
// index objects of 256 packs (a backup writes 16 packs an object; repair
// and prune up to 4096).
const (
	blobsPerPack  = 20
	packsPerIndex = 256
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: indexscale gen|open [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "open":
		err = open(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: gen or open", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "indexscale:", err)
		os.Exit(1)
	}
}

func count(s string) (int, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a count (write 1e8 or 100000000)", s)
	}
	return int(v), nil
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// blobID is the ID of synthetic blob i (a pack's, with i >= 1<<40):
// uniform as keyed hashes are, and computed again by open.
func blobID(i uint64) id.ID {
	var b id.ID
	x := i
	for k := 0; k < id.Size; k += 8 {
		x = splitmix(x)
		binary.LittleEndian.PutUint64(b[k:], x)
	}
	return b
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	dir := fs.String("repo", "", "directory of the new repository")
	nStr := fs.String("blobs", "1e6", "blobs to index")
	fs.Parse(args)
	n, err := count(*nStr)
	if err != nil || *dir == "" {
		return fmt.Errorf("gen needs -repo and -blobs: %v", err)
	}
	ctx := context.Background()
	be, err := local.Open(*dir)
	if err != nil {
		return err
	}
	kdf := crypto.FastKDFParamsForTests()
	r, err := repository.Init(ctx, be, []byte(passphrase), repository.InitOptions{Options: repository.Options{KDF: &kdf}})
	if err != nil {
		return err
	}
	defer r.Close()
	start := time.Now()
	perIndex := blobsPerPack * packsPerIndex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for first := 0; first < n; first += perIndex {
		g.Go(func() error {
			var packs []index.PackBlobs
			for b := first; b < min(first+perIndex, n); b++ {
				if (b-first)%blobsPerPack == 0 {
					packs = append(packs, index.PackBlobs{Pack: blobID(1<<40 + uint64(b/blobsPerPack))})
				}
				p := &packs[len(packs)-1]
				k := len(p.Blobs)
				p.Blobs = append(p.Blobs, index.Entry{ID: blobID(uint64(b)), Pack: p.Pack,
					Offset: uint32(k) << 20, Length: 1<<20 + 40, RawLength: 1 << 20})
			}
			_, err := r.WriteIndexObject(gctx, packs)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Printf("generated %d blobs in %d index objects in %.1f s\n", n, (n+perIndex-1)/perIndex, time.Since(start).Seconds())
	return nil
}

func open(args []string) error {
	fs := flag.NewFlagSet("open", flag.ExitOnError)
	dir := fs.String("repo", "", "directory of the repository gen wrote")
	cache := fs.String("cache", "", "cache directory; empty: the index in memory")
	lStr := fs.String("lookups", "1e6", "random lookups of known blobs to time")
	fs.Parse(args)
	nLookups, err := count(*lStr)
	if err != nil || *dir == "" {
		return fmt.Errorf("open needs -repo: %v", err)
	}
	ctx := context.Background()
	be, err := local.Open(*dir)
	if err != nil {
		return err
	}
	kdf := crypto.FastKDFParamsForTests()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	start := time.Now()
	r, err := repository.Open(ctx, be, []byte(passphrase), repository.Options{KDF: &kdf, Logger: log, IndexCacheDir: *cache, IndexCacheMinBlobs: 1})
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	openTime := time.Since(start)
	idx := r.Index()
	n := idx.Len()
	where := "memory"
	if c := r.IndexCache(); c != nil {
		where = fmt.Sprintf("cache (built: %v, %d MB)", c.Built, c.Bytes>>20)
	}
	fmt.Printf("opened %d blobs, index in %s, in %.2f s; in-memory index %d MB; %s\n", n, where, openTime.Seconds(), idx.MemoryBytes()>>20, memory())
	if nLookups == 0 || n == 0 {
		return nil
	}
	start = time.Now()
	x := uint64(1)
	for range nLookups {
		x = splitmix(x)
		if _, ok := idx.Lookup(blobID(x % uint64(n))); !ok {
			return fmt.Errorf("blob %d not found", x%uint64(n))
		}
	}
	el := time.Since(start)
	fmt.Printf("%d random lookups: %.0f ns each; %s\n", nLookups, float64(el.Nanoseconds())/float64(nLookups), memory())
	return nil
}

// memory reports the process's resident memory: its peak, and now the
// anonymous part (the heap) and the file-backed part (mapped cache pages
// the kernel may drop).
func memory() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return ""
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		if err == nil {
			m[k] = strconv.Itoa(kb/1024) + " MB"
		}
	}
	return fmt.Sprintf("peak RSS %s, RSS %s (anon %s, file %s)", m["VmHWM"], m["VmRSS"], m["RssAnon"], m["RssFile"])
}
