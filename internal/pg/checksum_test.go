package pg

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/pgtest"
)

// TestPageChecksumRealCluster checks the checksum against pages a real
// PostgreSQL wrote with data checksums on.
func TestPageChecksumRealCluster(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Checksums: true})
	c.Exec(t, `CREATE TABLE ledger (id int PRIMARY KEY, note text);
		INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
		CHECKPOINT`)
	rel := c.QueryString(t, "SELECT pg_relation_filepath('ledger')")
	idx := c.QueryString(t, "SELECT pg_relation_filepath('ledger_pkey')")
	c.Stop(t)

	for _, r := range []string{rel, idx} {
		data, err := os.ReadFile(filepath.Join(c.DataDir, r))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) < 10*PageSize || len(data)%PageSize != 0 {
			t.Fatalf("%s has %d bytes", r, len(data))
		}
		for blk := 0; blk < len(data)/PageSize; blk++ {
			if err := VerifyPage(data[blk*PageSize:(blk+1)*PageSize], uint32(blk)); err != nil {
				t.Fatalf("%s: PostgreSQL's own page fails: %v", r, err)
			}
		}
		v := NewPageVerifier(^LSN(0))
		v.OnChunk(r, 0, data)
		if st := v.Stats(); st.Verified != int64(len(data)/PageSize) || st.Corrupt != 0 {
			t.Errorf("%s: verifier stats %+v for %d pages", r, st, len(data)/PageSize)
		}
	}

	data, err := os.ReadFile(filepath.Join(c.DataDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	// One flipped bit in the tuple data of block 3.
	data[3*PageSize+5000] ^= 0x10
	err = VerifyPage(data[3*PageSize:4*PageSize], 3)
	if err == nil || !strings.Contains(err.Error(), "block 3") {
		t.Fatalf("flipped bit: %v", err)
	}
	// A page copied to another block fails too: the block number is mixed in.
	if err := VerifyPage(data[4*PageSize:5*PageSize], 5); err == nil {
		t.Error("page 4 verifies as block 5")
	}

	// The verifier names the block, in chunks of any page multiple,
	// and skips pages written after the backup started.
	v := NewPageVerifier(^LSN(0))
	for off := 0; off < len(data); off += 4 * PageSize {
		v.OnChunk(rel, int64(off), data[off:min(off+4*PageSize, len(data))])
	}
	got := v.Corrupt()
	if len(got) != 1 || got[0].Path != rel || got[0].Block != 3 || !strings.Contains(got[0].Error, "checksum") {
		t.Errorf("Corrupt() = %+v", got)
	}
	late := NewPageVerifier(PageLSN(data[3*PageSize:]))
	late.OnChunk(rel, 0, data)
	if st := late.Stats(); st.Corrupt != 0 || st.Concurrent == 0 {
		t.Errorf("page changed after the backup start was reported: %+v", st)
	}

	// With DataDir, a failing page is read again: the file on disk is fine,
	// so a torn read is not reported.
	torn := NewPageVerifier(^LSN(0))
	torn.DataDir = c.DataDir
	torn.OnChunk(rel, 0, data)
	if st := torn.Stats(); st.Corrupt != 0 {
		t.Errorf("re-read of an intact page still reported: %+v", st)
	}
}

func TestPageVerifierSegmentBlockNumbers(t *testing.T) {
	page := make([]byte, PageSize)
	binary.LittleEndian.PutUint32(page[4:], 0x1000) // pd_lsn 0/1000
	binary.LittleEndian.PutUint16(page[offLower:], 40)
	binary.LittleEndian.PutUint16(page[offUpper:], 8000)
	binary.LittleEndian.PutUint16(page[offSpecial:], PageSize)
	copy(page[8000:], "tuple data")
	// Block 2 of the relation's second 1 GiB segment file.
	binary.LittleEndian.PutUint16(page[offChecksum:], PageChecksum(page, RelSegBlocks+2))
	buf := make([]byte, 3*PageSize)
	copy(buf[2*PageSize:], page)

	v := NewPageVerifier(0x2000)
	v.OnChunk("base/16384/16397.1", 0, buf)
	if st := v.Stats(); st.Verified != 1 || st.New != 2 || st.Corrupt != 0 {
		t.Errorf("segment 1: %+v, %v", st, v.Corrupt())
	}
	v = NewPageVerifier(0x2000)
	v.OnChunk("base/16384/16397", 0, buf) // same page in segment 0: wrong block number
	if got := v.Corrupt(); len(got) != 1 || got[0].Block != 2 {
		t.Errorf("segment 0: %+v", got)
	}
	// Forks and tablespaces are relation files; other files are ignored.
	for _, p := range []string{"base/1/16397_fsm.1", "global/1262_vm.1", "pg_tblspc/16390/PG_15_202209061/5/16397.1"} {
		v := NewPageVerifier(0x2000)
		v.OnChunk(p, 0, buf)
		if st := v.Stats(); st.Verified != 1 {
			t.Errorf("%s: %+v", p, st)
		}
	}
	for _, p := range []string{"global/pg_control", "base/1/pg_filenode.map", "pg_wal/000000010000000000000001", "base/1/t3_16397.1", "PG_VERSION"} {
		v := NewPageVerifier(0x2000)
		v.OnChunk(p, 0, buf)
		if st := v.Stats(); st != (PageStats{}) {
			t.Errorf("%s is not a relation file but was verified: %+v", p, st)
		}
	}
	// Unaligned and short chunks check only whole pages.
	v = NewPageVerifier(0x2000)
	v.OnChunk("base/16384/16397.1", 100, buf[100:])
	v.OnChunk("base/16384/16397.1", 0, buf[:100])
	if st := v.Stats(); st.Verified != 1 || st.New != 1 || st.Partial != 2 {
		t.Errorf("unaligned: %+v", st)
	}
}

func TestVerifyPageRejects(t *testing.T) {
	if err := VerifyPage(make([]byte, PageSize), 7); err != nil {
		t.Errorf("all-zero page: %v", err)
	}
	if err := VerifyPage(make([]byte, PageSize-1), 7); err == nil {
		t.Error("short page accepted")
	}
	page := make([]byte, PageSize)
	page[100] = 1
	if err := VerifyPage(page, 7); err == nil || !strings.Contains(err.Error(), "not all zeros") {
		t.Errorf("new page with data: %v", err)
	}
	// Right checksum, impossible header.
	page = make([]byte, PageSize)
	binary.LittleEndian.PutUint16(page[offLower:], 500)
	binary.LittleEndian.PutUint16(page[offUpper:], 400)
	binary.LittleEndian.PutUint16(page[offSpecial:], PageSize)
	binary.LittleEndian.PutUint16(page[offChecksum:], PageChecksum(page, 7))
	if err := VerifyPage(page, 7); err == nil || !strings.Contains(err.Error(), "header invalid") {
		t.Errorf("bad header: %v", err)
	}
}

func FuzzVerifyPage(f *testing.F) {
	f.Add(make([]byte, PageSize), uint32(0))
	f.Fuzz(func(t *testing.T, page []byte, blkno uint32) {
		VerifyPage(page, blkno)
		if len(page) >= 16 {
			v := NewPageVerifier(LSN(blkno))
			v.OnChunk("base/1/2.3", int64(blkno%3), page)
		}
	})
}

func BenchmarkPageChecksum(b *testing.B) {
	page := make([]byte, PageSize)
	for i := range page {
		page[i] = byte(i * 7)
	}
	b.SetBytes(PageSize)
	for b.Loop() {
		PageChecksum(page, 42)
	}
}
