package archiver

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nestguard/nestguard/internal/chunker"
	"github.com/nestguard/nestguard/internal/directio"
	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/tree"
)

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// writeFile writes data to a new file in dir and, if dropCache, has its
// pages dropped from the page cache, so that reading it needs the disk.
func writeFile(t *testing.T, dir, name string, data []byte, dropCache bool) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if dropCache {
		if err := directio.Evict(p); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestDirectReader: a file is read whole and unchanged, in reads of any
// size, whether its size is a multiple of the block or of the alignment
// or neither; blocks not in the page cache are read direct, blocks in it
// through it.
func TestDirectReader(t *testing.T) {
	dir := t.TempDir()
	var pool hugemem.Pool
	defer pool.Release()
	for _, c := range []struct {
		name     string
		size     int
		cached   bool
		readSize int
	}{
		{name: "blocks", size: 3 * directBlock, readSize: 1 << 20},
		{name: "unaligned tail", size: 2*directBlock + 12345, readSize: 1000003},
		{name: "aligned tail", size: directBlock + 5*directio.Align, readSize: 1 << 20},
		{name: "under a block", size: directBlock - 1, readSize: 1 << 20},
		{name: "cached", size: 2*directBlock + 77, cached: true, readSize: 1 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := randomBytes(c.size, byte(c.size))
			p := writeFile(t, dir, c.name, data, !c.cached)
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r := newDirectReader(f, p, int64(c.size), 1, &pool)
			if r == nil {
				t.Skip("the file system of the test directory takes no direct reads")
			}
			var got []byte
			buf := make([]byte, c.readSize)
			for {
				n, err := r.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			r.Close()
			if !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes that differ from the file's %d", len(got), len(data))
			}
			blocks := (c.size + directBlock - 1) / directBlock
			if c.cached && (r.direct != 0 || r.cached < blocks) {
				t.Errorf("a file in the page cache: %d blocks read direct, %d cached; want 0 and %d", r.direct, r.cached, blocks)
			}
			if !c.cached && r.direct < blocks-1 {
				t.Errorf("a file not in the page cache: %d blocks read direct, %d cached; want at least %d direct", r.direct, r.cached, blocks-1)
			}
		})
	}
}

// TestDirectReaderClose: closing before the end stops the reading ahead
// (the test would hang or leak otherwise) and the next reader reuses the
// buffers.
func TestDirectReaderClose(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(4*directBlock, 3)
	p := writeFile(t, dir, "f", data, true)
	var pool hugemem.Pool
	defer pool.Release()
	for range 3 {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		r := newDirectReader(f, p, int64(len(data)), 1, &pool)
		if r == nil {
			f.Close()
			t.Skip("the file system of the test directory takes no direct reads")
		}
		buf := make([]byte, 1<<20)
		if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, data[:len(buf)]) {
			t.Fatalf("first read: %v", err)
		}
		r.Close()
		f.Close()
		if pool.Len() != 2 {
			t.Fatalf("%d buffers kept after Close, want the reader's 2", pool.Len())
		}
	}
}

// TestDirectSameChunks: a file read direct is chunked and stored exactly
// as one read through the page cache: the same chunk IDs, and stored
// content that reassembles to the file; with the content-defined chunker
// and with a Splitter's (PostgreSQL's relation files: fixed blocks),
// which is handed the direct reader.
func TestDirectSameChunks(t *testing.T) {
	ctx := context.Background()
	params := chunker.Params{Min: 64 << 10, Avg: 128 << 10, Max: 512 << 10}
	data := randomBytes(2*directBlock+98765, 7)
	repo := repotest.New(t) // one key: one chunker seed and blob ID key
	for _, fixed := range []bool{false, true} {
		dir := t.TempDir()
		var ids [2][]id.ID
		for i, direct := range []bool{false, true} {
			p := writeFile(t, dir, "f", data, true)
			opt := Options{Chunker: params}
			var splitGot io.Reader
			if fixed {
				opt.Splitter = func(_ string, rd io.Reader) chunker.Splitter {
					splitGot = rd
					return chunker.NewFixed(rd, 32<<10)
				}
			}
			a := New(repo, opt)
			if direct {
				a.directMin = 1
			} else {
				a.directMin = 1 << 62
			}
			err := a.run(ctx, func(ctx context.Context) error {
				j := &fileJob{abs: p, rel: "f", f: future{done: make(chan struct{}), node: &tree.Node{Size: uint64(len(data))}}}
				var err error
				ids[i], err = a.chunkFile(ctx, j)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := splitGot.(*directReader); fixed && ok != direct {
				t.Errorf("fixed blocks, direct %v: the splitter read from a %T", direct, splitGot)
			}
			if err := repo.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			var back []byte
			for _, bid := range ids[i] {
				b, err := repo.LoadBlob(ctx, bid, nil)
				if err != nil {
					t.Fatal(err)
				}
				back = append(back, b...)
			}
			if !bytes.Equal(back, data) {
				t.Fatalf("fixed %v, direct %v: stored %d bytes that differ from the file's %d", fixed, direct, len(back), len(data))
			}
		}
		if len(ids[0]) < 3 || !slices.Equal(ids[0], ids[1]) {
			t.Fatalf("fixed %v: chunk IDs read through the page cache %d, direct %d: they differ", fixed, len(ids[0]), len(ids[1]))
		}
	}
}
