package archiver

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
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
