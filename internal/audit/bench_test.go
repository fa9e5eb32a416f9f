package audit

import (
	"context"
	"testing"
	"time"
)

// BenchmarkAppend is what a command's record costs on a local directory:
// list the log, read and check its head, seal, sign, store (fsync).
func BenchmarkAppend(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if _, err := f.log.Append(ctx, rec("backup", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSpoolAdd is what a batched call (pg archive-wal) costs when
// the spool is not due: one fsynced line.
func BenchmarkSpoolAdd(b *testing.B) {
	sp := NewSpool(b.TempDir(), testLogID)
	it := BatchItem{Time: time.Now(), Arg: "pg_wal/000000010000000000000001", Outcome: Success}
	for b.Loop() {
		if err := sp.Add(it); err != nil {
			b.Fatal(err)
		}
	}
}
