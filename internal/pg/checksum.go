package pg

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// PageSize is PostgreSQL's block size (BLCKSZ) as Debian and nearly every
// build use it. Clusters built with another block size are not verified.
const PageSize = 8192

// RelSegBlocks is how many pages one relation segment file (1 GiB, the
// default RELSEG_SIZE) holds: block numbers continue across base/db/rel,
// rel.1, rel.2, ...
const RelSegBlocks = 131072

// Page header layout (storage/bufpage.h), little-endian on every platform
// we run on: pd_lsn (8: xlogid, xrecoff), pd_checksum (2), pd_flags (2),
// pd_lower (2), pd_upper (2), pd_special (2), ...
const (
	offChecksum = 8
	offFlags    = 10
	offLower    = 12
	offUpper    = 14
	offSpecial  = 16

	validFlagBits = 0x0007 // PD_VALID_FLAG_BITS
)

// checksumBase are the initial values of the 32 parallel FNV-1a lanes of
// PostgreSQL's page checksum (storage/checksum_impl.h).
var checksumBase = [32]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

const fnvPrime = 16777619

// PageChecksum computes pg_checksum_page: the page as 32 columns of uint32
// words, each column hashed with a variant of FNV-1a that also mixes in the
// value shifted right by 17, the pd_checksum field counted as zero, two
// rounds of zeros for mixing, the columns xor-folded, the block number
// xor-ed in (so that a page written to the wrong place fails), reduced to
// 1..65535. page must be PageSize bytes.
func PageChecksum(page []byte, blkno uint32) uint16 {
	p := (*[PageSize]byte)(page)
	sums := checksumBase
	// Eight columns at a time, down all the rows: eight independent
	// chains keep the multiplier busy, where one column's chain would
	// wait on each multiply (2.4x faster than row by row).
	for j := 0; j < 32; j += 8 {
		s0, s1, s2, s3 := sums[j], sums[j+1], sums[j+2], sums[j+3]
		s4, s5, s6, s7 := sums[j+4], sums[j+5], sums[j+6], sums[j+7]
		for off := 4 * j; off < PageSize; off += 4 * 32 {
			w := (*[32]byte)(p[off : off+32])
			v0 := binary.LittleEndian.Uint32(w[0:])
			if off == offChecksum-8 {
				// pd_checksum (the low half of the third word on
				// little-endian) is computed as zero.
				v2 := binary.LittleEndian.Uint32(w[8:]) &^ 0xFFFF
				s2 = checksumComp(s2, v2)
			} else {
				s2 = checksumComp(s2, binary.LittleEndian.Uint32(w[8:]))
			}
			s0 = checksumComp(s0, v0)
			s1 = checksumComp(s1, binary.LittleEndian.Uint32(w[4:]))
			s3 = checksumComp(s3, binary.LittleEndian.Uint32(w[12:]))
			s4 = checksumComp(s4, binary.LittleEndian.Uint32(w[16:]))
			s5 = checksumComp(s5, binary.LittleEndian.Uint32(w[20:]))
			s6 = checksumComp(s6, binary.LittleEndian.Uint32(w[24:]))
			s7 = checksumComp(s7, binary.LittleEndian.Uint32(w[28:]))
		}
		sums[j], sums[j+1], sums[j+2], sums[j+3] = s0, s1, s2, s3
		sums[j+4], sums[j+5], sums[j+6], sums[j+7] = s4, s5, s6, s7
	}
	for range 2 {
		for j := range sums {
			sums[j] = checksumComp(sums[j], 0)
		}
	}
	var result uint32
	for _, s := range sums {
		result ^= s
	}
	result ^= blkno
	return uint16(result%65535 + 1)
}

// checksumComp is CHECKSUM_COMP: one word mixed into one column's sum.
func checksumComp(sum, v uint32) uint32 {
	tmp := sum ^ v
	return tmp*fnvPrime ^ tmp>>17
}

// PageLSN is the page's pd_lsn: the end of the last WAL record that
// changed it.
func PageLSN(page []byte) LSN {
	hi := binary.LittleEndian.Uint32(page[0:4])
	lo := binary.LittleEndian.Uint32(page[4:8])
	return LSN(uint64(hi)<<32 | uint64(lo))
}

// pageIsNew is PageIsNew: a page never initialised (pd_upper 0).
func pageIsNew(page []byte) bool { return binary.LittleEndian.Uint16(page[offUpper:]) == 0 }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// VerifyPage checks a page as PostgreSQL does when it reads one: a new
// page must be all zeros; any other page must carry the right checksum
// for its block number blkno (counted from the start of the relation,
// across segment files) and a sane header.
func VerifyPage(page []byte, blkno uint32) error {
	if len(page) != PageSize {
		return fmt.Errorf("block %d: page has %d bytes, not %d", blkno, len(page), PageSize)
	}
	if pageIsNew(page) {
		if allZero(page) {
			return nil
		}
		return fmt.Errorf("block %d: page header says the page is new (pd_upper 0) but the page is not all zeros", blkno)
	}
	stored := binary.LittleEndian.Uint16(page[offChecksum:])
	if want := PageChecksum(page, blkno); stored != want {
		return fmt.Errorf("block %d: checksum %d stored, %d computed", blkno, stored, want)
	}
	// The header checks of PageIsVerifiedExtended.
	flags := binary.LittleEndian.Uint16(page[offFlags:])
	lower := binary.LittleEndian.Uint16(page[offLower:])
	upper := binary.LittleEndian.Uint16(page[offUpper:])
	special := binary.LittleEndian.Uint16(page[offSpecial:])
	if flags&^validFlagBits != 0 || lower > upper || upper > special || int(special) > PageSize || special%8 != 0 {
		return fmt.Errorf("block %d: checksum correct but page header invalid (flags %#x, lower %d, upper %d, special %d)",
			blkno, flags, lower, upper, special)
	}
	return nil
}

// maxCorruptPages bounds the list a backup records; the count goes on.
const maxCorruptPages = 1000

// PageVerifier checks the page checksums of relation files while a base
// backup reads them: pass its OnChunk as archiver.Options.OnChunk. It is
// safe for concurrent use (the archiver reads several files at once).
//
// Pages whose LSN is at or after the backup's start are skipped, as
// pg_basebackup does: they may be being written while read, and WAL replay
// from the backup's start rewrites them from full-page images anyway.
type PageVerifier struct {
	startLSN LSN
	// DataDir, if set, is where paths are relative to: a page that fails
	// is read again from the file once, since a read racing a write can
	// see half of each (a torn page) although nothing is wrong on disk.
	DataDir string

	verified, skippedNew, skippedLSN, partial, corrupt atomic.Int64

	mu    sync.Mutex
	pages []CorruptPage
}

// PageStats counts what a PageVerifier saw.
type PageStats struct {
	Verified   int64 // pages whose checksum was checked and correct
	New        int64 // all-zero pages (never written: no checksum yet)
	Concurrent int64 // pages changed since the backup started (skipped)
	Partial    int64 // incomplete pages at a chunk or file end (skipped)
	Corrupt    int64
}

// NewPageVerifier returns a verifier for a backup that started at start.
func NewPageVerifier(start LSN) *PageVerifier { return &PageVerifier{startLSN: start} }

// OnChunk verifies the whole pages of data, read at offset of the file at
// path (relative to the data directory, with forward slashes). Files that
// are not relation files are ignored.
func (v *PageVerifier) OnChunk(path string, offset int64, data []byte) {
	rel, ok := relationFile(path)
	if !ok {
		return
	}
	// Only whole, aligned pages can be checked; the archiver chunks
	// relation files on page boundaries, so this skips at most a torn end.
	if skip := (PageSize - offset%PageSize) % PageSize; skip > 0 {
		if skip >= int64(len(data)) {
			v.partial.Add(1)
			return
		}
		v.partial.Add(1)
		data, offset = data[skip:], offset+skip
	}
	for len(data) > 0 {
		if len(data) < PageSize {
			v.partial.Add(1)
			return
		}
		page := data[:PageSize]
		blockInFile := offset / PageSize
		v.verify(path, page, blockInFile, uint32(int64(rel.segment)*RelSegBlocks+blockInFile))
		data, offset = data[PageSize:], offset+PageSize
	}
}

func (v *PageVerifier) verify(path string, page []byte, blockInFile int64, blkno uint32) {
	if pageIsNew(page) && allZero(page) {
		v.skippedNew.Add(1)
		return
	}
	if PageLSN(page) >= v.startLSN {
		v.skippedLSN.Add(1)
		return
	}
	err := VerifyPage(page, blkno)
	if err == nil {
		v.verified.Add(1)
		return
	}
	if v.DataDir != "" {
		again, rerr := v.reread(path, blockInFile)
		switch {
		case errors.Is(rerr, io.EOF):
			v.partial.Add(1) // truncated since: replay truncates it too
			return
		case rerr == nil && (PageLSN(again) >= v.startLSN || pageIsNew(again) && allZero(again)):
			v.skippedLSN.Add(1)
			return
		case rerr == nil && VerifyPage(again, blkno) == nil:
			v.verified.Add(1)
			return
		}
	}
	v.corrupt.Add(1)
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.pages) < maxCorruptPages {
		v.pages = append(v.pages, CorruptPage{Path: path, Block: blockInFile, Error: err.Error()})
	}
}

func (v *PageVerifier) reread(path string, blockInFile int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(v.DataDir, filepath.FromSlash(path)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	page := make([]byte, PageSize)
	if _, err := f.ReadAt(page, blockInFile*PageSize); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return nil, err
	}
	return page, nil
}

// Corrupt lists the corrupt pages found (the first 1000), by path and block.
func (v *PageVerifier) Corrupt() []CorruptPage {
	v.mu.Lock()
	out := slices.Clone(v.pages)
	v.mu.Unlock()
	slices.SortFunc(out, func(a, b CorruptPage) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), cmp.Compare(a.Block, b.Block))
	})
	return out
}

// Stats returns the counts so far.
func (v *PageVerifier) Stats() PageStats {
	return PageStats{
		Verified:   v.verified.Load(),
		New:        v.skippedNew.Load(),
		Concurrent: v.skippedLSN.Load(),
		Partial:    v.partial.Load(),
		Corrupt:    v.corrupt.Load(),
	}
}
