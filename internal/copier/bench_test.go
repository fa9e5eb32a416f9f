package copier

import (
	"context"
	"testing"

	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// BenchmarkCopy copies one 64 MiB snapshot between in-memory repositories:
// the cost of reading, re-encrypting and re-identifying, without storage.
func BenchmarkCopy(b *testing.B) {
	src := repotest.New(b)
	dir := b.TempDir()
	writeFiles(b, dir, 9, 64, 1<<20)
	backup(b, src, dir)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dst := repotest.New(b)
		c, _ := New(src, dst, Options{})
		b.StartTimer()
		res, err := c.Run(context.Background(), nil, true, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(res.BytesRead)
	}
}
