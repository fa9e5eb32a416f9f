package copier

import (
	"context"
	"testing"

	"github.com/nestguard/nestguard/internal/backend/mem"
)

// BenchmarkCopy copies one 64 MiB snapshot between in-memory repositories:
// the cost of reading, re-encrypting and re-identifying, without storage.
func BenchmarkCopy(b *testing.B) {
	src := initRepo(b, mem.New(), "s")
	dir := b.TempDir()
	writeFiles(b, dir, 9, 64, 1<<20)
	backup(b, src, dir)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dst := initRepo(b, mem.New(), "d")
		c, _ := New(src, dst, Options{})
		b.StartTimer()
		res, err := c.Run(context.Background(), nil, true, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(res.BytesRead)
	}
}
