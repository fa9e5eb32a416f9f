package local

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
)

// BenchmarkSave measures a pack-sized Save, fsyncs included.
func BenchmarkSave(b *testing.B) {
	be, err := Create(filepath.Join(b.TempDir(), "repo"))
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("nestguard"), (16<<20)/9)
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		h := backend.Handle{Type: backend.PackFile, Name: fmt.Sprintf("%064x", i)}
		i++
		if err := be.Save(context.Background(), h, bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadRange measures a blob-sized ranged read from a cached pack.
func BenchmarkLoadRange(b *testing.B) {
	be, err := Create(filepath.Join(b.TempDir(), "repo"))
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("nestguard"), (16<<20)/9)
	h := backend.Handle{Type: backend.PackFile, Name: "ab"}
	if err := be.Save(context.Background(), h, bytes.NewReader(data), int64(len(data))); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		rd, err := be.Load(context.Background(), h, 5<<20, int64(len(buf)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(rd, buf); err != nil {
			b.Fatal(err)
		}
		rd.Close()
	}
}
