package pg

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/pgtest"
)

// BenchmarkSecondBackup measures what a base backup stores after 1% of
// the pages of a pgbench database changed at random, per relation block
// size: the numbers behind DefaultBlockSize (docs/postgres.md). Run with
//
//	go test ./internal/pg -run XXX -bench SecondBackup -benchtime 1x
//
// PGBENCH_SCALE sets the database size (default 10, about 160 MB);
// PGBENCH_FILLER=random replaces pgbench's blank filler with hex digits,
// which compress about as well as typical table data (2:1) rather than
// 10:1.
func BenchmarkSecondBackup(b *testing.B) {
	pgtest.Require(b)
	c := startArchived(b, pgtest.Options{Checksums: true, Settings: map[string]string{"max_wal_size": "1GB"}})
	scale := "10"
	if s := os.Getenv("PGBENCH_SCALE"); s != "" {
		scale = s
	}
	c.Pgbench(b, "-i", "-q", "-s", scale)
	if os.Getenv("PGBENCH_FILLER") == "random" {
		c.Exec(b, "UPDATE pgbench_accounts SET filler = md5(random()::text) || md5(random()::text)")
		c.Exec(b, "VACUUM FULL pgbench_accounts")
	}
	c.Exec(b, "VACUUM (FREEZE, ANALYZE)")
	c.Exec(b, "CHECKPOINT")
	for _, bs := range []int{8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10} {
		b.Run(fmt.Sprintf("block=%dKiB", bs>>10), func(b *testing.B) {
			for range b.N {
				repo := testRepo(b)
				c.also.Store(repo)
				o := BackupOptions{DataDir: c.DataDir, DSN: c.DSN(), BlockSize: bs, WALTimeout: time.Minute}
				start := time.Now()
				sn1, info1, err := Backup(context.Background(), repo, o)
				if err != nil {
					b.Fatal(err)
				}
				first := time.Since(start)
				// One row on each of a random 1% of the heap pages.
				c.Exec(b, `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE ctid = ANY (ARRAY(
					SELECT format('(%s,1)', p)::tid FROM generate_series(0, pg_relation_size('pgbench_accounts') / 8192 - 1) p
					WHERE random() < 0.01))`)
				c.Exec(b, "CHECKPOINT")
				start = time.Now()
				sn2, info2, err := Backup(context.Background(), repo, o)
				if err != nil {
					b.Fatal(err)
				}
				second := time.Since(start)
				s := sn2.Summary
				b.ReportMetric(100*float64(s.DataAdded)/float64(info2.DatabaseSize), "%added")
				b.ReportMetric(100*float64(s.DataStored)/float64(info2.DatabaseSize), "%stored")
				b.ReportMetric(float64(info1.DatabaseSize)/(1<<20)/first.Seconds(), "MB/s-first")
				b.ReportMetric(second.Seconds(), "s-second")
				b.Logf("database %d MB; first backup %v (%d MB stored); second %v, added %d KB, stored %d KB, %d files read of %d",
					info2.DatabaseSize>>20, first.Round(time.Millisecond), sn1.Summary.DataStored>>20, second.Round(time.Millisecond),
					s.DataAdded>>10, s.DataStored>>10, s.FilesNew+s.FilesChanged, s.Files)
			}
		})
	}
}
