package archiver

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/nestguard/nestguard/internal/chunker"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/tree"
)

// countingReader counts the reads of a reader.
type countingReader struct {
	rd    io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.rd.Read(p)
}

// TestWholeFileReads: a small file is one read when it has its stat size
// (no further read for the end of the file), a file grown since its stat
// is read whole, a shrunk one as it is, and short reads are taken in
// turn.
func TestWholeFileReads(t *testing.T) {
	for _, c := range []struct {
		name    string
		content string
		size    int64
		oneByte bool
		reads   int // 0: not checked
	}{
		{name: "stat size", content: "hello", size: 5, reads: 1},
		{name: "grown", content: "hello, world", size: 5},
		{name: "shrunk", content: "hel", size: 5, reads: 2},
		{name: "empty", content: "", size: 0, reads: 1},
		{name: "short reads", content: "hello", size: 5, oneByte: true, reads: 5},
		{name: "short reads, shrunk", content: "hel", size: 5, oneByte: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var rd io.Reader = strings.NewReader(c.content)
			if c.oneByte {
				rd = iotest.OneByteReader(rd)
			}
			cr := &countingReader{rd: rd}
			w := &wholeFile{rd: cr, size: c.size}
			var got []byte
			for {
				b, err := w.Next(nil)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, b...)
			}
			if !bytes.Equal(got, []byte(c.content)) {
				t.Fatalf("read %q, want %q", got, c.content)
			}
			if c.reads != 0 && cr.reads != c.reads {
				t.Fatalf("%d reads, want %d", cr.reads, c.reads)
			}
		})
	}
}

// TestChunkSmallChanged: a file listed as small is read through its
// descriptor; one that has grown past the minimum chunk since is read as
// a large file, whole, and one that is no longer a regular file is an
// error naming it.
func TestChunkSmallChanged(t *testing.T) {
	ctx := context.Background()
	repo := repotest.New(t)
	dir := t.TempDir()
	params := chunker.Params{Min: 64 << 10, Avg: 128 << 10, Max: 512 << 10}
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*params.Min/16)
	for _, c := range []struct {
		name    string
		content []byte // nil: a directory
		listed  uint64
	}{
		{name: "small", content: []byte("hello"), listed: 5},
		{name: "grown", content: big, listed: 5},
		{name: "dir", listed: 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			var err error
			if c.content == nil {
				err = os.Mkdir(p, 0o755)
			} else {
				err = os.WriteFile(p, c.content, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []id.ID
			a := New(repo, Options{Chunker: params})
			err = a.run(ctx, func(ctx context.Context) error {
				j := &fileJob{abs: p, rel: c.name, f: future{done: make(chan struct{}), node: &tree.Node{Size: c.listed}}}
				var err error
				got, err = a.chunkFile(ctx, j)
				if c.content != nil && j.f.node.Size != uint64(len(c.content)) {
					t.Errorf("node size %d, read %d", j.f.node.Size, len(c.content))
				}
				return err
			})
			if c.content == nil {
				if err == nil || !strings.Contains(err.Error(), "no longer a regular file") {
					t.Fatalf("got %v, want an error saying %s is no longer a regular file", err, p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := repo.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			var back []byte
			for _, bid := range got {
				b, err := repo.LoadBlob(ctx, bid, nil)
				if err != nil {
					t.Fatal(err)
				}
				back = append(back, b...)
			}
			if !bytes.Equal(back, c.content) {
				t.Fatalf("stored %d bytes, want the file's %d", len(back), len(c.content))
			}
		})
	}
}
