//go:build unix

package local

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
)

// The directory reader gives the same bytes whether it relies on a short
// read as the end of a file or reads on to one that returns nothing (as
// on a file system it does not know), and reads a type whose directory
// went missing through LoadAll, as fs.ErrNotExist.
func TestWholeReaderShortReads(t *testing.T) {
	ctx := context.Background()
	b, err := Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("audit entry "), 100)
	h := backend.Handle{Type: backend.AuditFile, Name: "log-00000000000000000000"}
	if err := b.Save(ctx, h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	r, err := b.OpenWholeReader(ctx, backend.AuditFile)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dr, ok := r.(*dirReader)
	if !ok {
		t.Fatalf("OpenWholeReader gave a %T, want a directory reader", r)
	}
	for _, short := range []bool{false, true} {
		dr.shortIsEOF = short
		for _, size := range []int{0, 16, len(data), len(data) + 1, 4096} {
			got, err := r.ReadAll(ctx, h.Name, 1<<20, make([]byte, 0, size))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("short reads as the end %v, buffer %d: %d bytes, %v", short, size, len(got), err)
			}
		}
	}

	if err := os.RemoveAll(filepath.Join(b.dir, string(backend.HoldFile))); err != nil {
		t.Fatal(err)
	}
	r2, err := b.OpenWholeReader(ctx, backend.HoldFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.ReadAll(ctx, "h1", 100, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reading from a missing directory: %v, want fs.ErrNotExist", err)
	}
}
