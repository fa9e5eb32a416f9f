package main

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/nestguard/nestguard/internal/miniotest"
)

// TestS3ArchiveWALRoundTrip: a segment archived by one archive-wal call
// (mapped and compressed in pieces) and a .partial one come back byte for
// byte from restore-wal on each S3 server kind; archiving the same
// segment again is success, a different one under its name is refused.
func TestS3ArchiveWALRoundTrip(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel()
		e, _ := s3TestEnv(t, k, "walroundtrip")
		e.must("init")
		const segSize = 16 << 20
		const name = "000000010000000000000007"
		seg := make([]byte, segSize)
		rng := rand.New(rand.NewPCG(7, 7))
		for i := 40; i+64 <= len(seg); i += 64 {
			binary.LittleEndian.PutUint64(seg[i:], rng.Uint64())
			copy(seg[i+8:], "a WAL record of a payment ledger ")
		}
		le := binary.LittleEndian
		le.PutUint16(seg[0:], 0xD110) // PostgreSQL 15's XLOG_PAGE_MAGIC
		le.PutUint16(seg[2:], 0x0002) // XLP_LONG_HEADER
		le.PutUint32(seg[4:], 1)
		le.PutUint64(seg[8:], 7*segSize)
		le.PutUint64(seg[24:], 7345678901234567890)
		le.PutUint32(seg[32:], segSize)
		le.PutUint32(seg[36:], 8192)
		wal := filepath.Join(e.dir, "pg_wal")
		os.MkdirAll(wal, 0o700)
		for _, n := range []string{name, name + ".partial"} {
			p := filepath.Join(wal, n)
			if err := os.WriteFile(p, seg, 0o600); err != nil {
				t.Fatal(err)
			}
			e.must("pg", "archive-wal", p)
			e.must("pg", "archive-wal", p) // PostgreSQL's retry: success
			out := filepath.Join(e.dir, "restored-"+n)
			e.must("pg", "restore-wal", n, out)
			if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, seg) {
				t.Fatalf("%s: restore-wal gave other bytes (%v)", n, err)
			}
		}
		other := bytes.Clone(seg)
		other[10<<20] ^= 1
		p := filepath.Join(wal, name)
		os.WriteFile(p, other, 0o600)
		if r := e.run("pg", "archive-wal", p); r.code != 1 {
			t.Errorf("a different segment under an archived name: exit %d: %s", r.code, r.stderr)
		}
	})
}
