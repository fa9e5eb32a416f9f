package pg

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
)

// makeSegment builds a WAL segment as PostgreSQL writes one: a long page
// header naming its position and size, then record-like data about as
// compressible as pgbench's WAL (pgbench segments shrink 6-15x): small
// headers with a few random bytes, and padded tuples.
func makeSegment(tli uint32, no uint64, segSize int64, seed uint64) []byte {
	b := make([]byte, segSize)
	rng := rand.New(rand.NewPCG(seed, no))
	for i := longPageHeaderBytes; i+128 <= len(b); i += 128 {
		binary.LittleEndian.PutUint32(b[i:], uint32(i))               // record length/position-like
		binary.LittleEndian.PutUint64(b[i+8:], rng.Uint64())          // xid, checksum: random
		binary.LittleEndian.PutUint32(b[i+16:], rng.Uint32()%100_000) // an account id
		copy(b[i+24:], "                                                                                    ")
	}
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110) // PostgreSQL 15's XLOG_PAGE_MAGIC
	le.PutUint16(b[2:], xlpLongHeader)
	le.PutUint32(b[4:], tli)
	le.PutUint64(b[8:], no*uint64(segSize))
	le.PutUint64(b[24:], 7345678901234567890)
	le.PutUint32(b[32:], uint32(segSize))
	le.PutUint32(b[36:], 8192)
	return b
}

func newLocalRepo(t testing.TB) (*repository.Repository, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	kdf := crypto.FastKDFParamsForTests()
	repo, err := repository.Init(context.Background(), be, []byte("pw"), repository.InitOptions{Options: repository.Options{KDF: &kdf}})
	if err != nil {
		t.Fatal(err)
	}
	return repo, dir
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestArchiveWAL(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	dir := t.TempDir()
	const segSize = 1 << 20
	name := Segment{TLI: 1, No: 37}.Name(segSize)
	seg := makeSegment(1, 37, segSize, 1)
	p := writeFile(t, dir, name, seg)

	res, err := ArchiveWAL(ctx, repo, p, name)
	if err != nil || res.AlreadyArchived || res.Size != segSize {
		t.Fatalf("ArchiveWAL: %+v, %v", res, err)
	}
	got, err := repo.LoadNamed(ctx, backend.WALFile, name)
	if err != nil || !bytes.Equal(got, seg) {
		t.Fatalf("stored copy differs: %v", err)
	}
	// PostgreSQL retries after a crash: the same content is success.
	if res, err := ArchiveWAL(ctx, repo, p, name); err != nil || !res.AlreadyArchived {
		t.Errorf("identical re-push: %+v, %v", res, err)
	}
	// Different content under the same name is refused, loudly.
	other := makeSegment(1, 37, segSize, 2)
	_, err = ArchiveWAL(ctx, repo, writeFile(t, dir, "other", other), name)
	if !errors.Is(err, ErrArchivedDiffers) || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("different re-push: %v", err)
	}
	if got, _ := repo.LoadNamed(ctx, backend.WALFile, name); !bytes.Equal(got, seg) {
		t.Error("the stored segment was replaced")
	}

	// History and backup history files: any size, stored as they are.
	hist := []byte("1\t0/25000000\tno recovery target specified\n")
	if _, err := ArchiveWAL(ctx, repo, writeFile(t, dir, "00000002.history", hist), "00000002.history"); err != nil {
		t.Errorf("history file: %v", err)
	}
	bh := "000000010000000000000025.00000028.backup"
	if _, err := ArchiveWAL(ctx, repo, writeFile(t, dir, bh, []byte("START WAL LOCATION: 0/25000028\n")), bh); err != nil {
		t.Errorf("backup history file: %v", err)
	}
	// A .partial segment is a whole segment too.
	partial := Segment{TLI: 1, No: 38}.Name(segSize) + ".partial"
	if _, err := ArchiveWAL(ctx, repo, writeFile(t, dir, partial, makeSegment(1, 38, segSize, 3)), partial); err != nil {
		t.Errorf("partial segment: %v", err)
	}
}

func TestArchiveWALRejects(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	dir := t.TempDir()
	const segSize = 1 << 20
	name := Segment{TLI: 1, No: 5}.Name(segSize)
	good := makeSegment(1, 5, segSize, 1)
	tests := []struct {
		what, name string
		data       []byte
		errPart    string
	}{
		{"truncated", name, good[:segSize/2], "a segment is archived only once complete"},
		{"wrong position", Segment{TLI: 1, No: 6}.Name(segSize), good, "does not belong under this name"},
		{"zeros", name, make([]byte, segSize), "not a WAL segment"},
		{"too short for a header", name, good[:20], "too few"},
		{"not a WAL name", "RECOVERYXLOG", good, "not a WAL file name"},
		{"lower-case name", strings.ToLower("0000000100000000000000AB"), good, "not a WAL file name"},
	}
	for _, tc := range tests {
		p := writeFile(t, dir, "f", tc.data)
		_, err := ArchiveWAL(ctx, repo, p, tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.errPart) {
			t.Errorf("%s: %v, want an error containing %q", tc.what, err, tc.errPart)
		}
		if _, err := repo.LoadNamed(ctx, backend.WALFile, tc.name); err == nil {
			t.Errorf("%s: stored anyway", tc.what)
		}
	}
	if _, err := ArchiveWAL(ctx, repo, filepath.Join(dir, "missing"), name); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestArchiveWALDamagedStoredCopy(t *testing.T) {
	ctx := context.Background()
	repo, repoDir := newLocalRepo(t)
	dir := t.TempDir()
	name := Segment{TLI: 1, No: 9}.Name(1 << 20)
	p := writeFile(t, dir, name, makeSegment(1, 9, 1<<20, 1))
	if _, err := ArchiveWAL(ctx, repo, p, name); err != nil {
		t.Fatal(err)
	}
	flipByte(t, filepath.Join(repoDir, "wal", name))
	_, err := ArchiveWAL(ctx, repo, p, name)
	if err == nil || !strings.Contains(err.Error(), "stored copy is damaged") {
		t.Errorf("re-push over a damaged copy: %v", err)
	}
}

func flipByte(t testing.TB, path string) {
	t.Helper()
	os.Chmod(path, 0o600)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o400); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkArchiveWAL measures one archive call for a 16 MiB segment into
// a local repository (no process start or key unlock).
func BenchmarkArchiveWAL(b *testing.B) {
	ctx := context.Background()
	repo, _ := newLocalRepo(b)
	dir := b.TempDir()
	const segSize = 16 << 20
	b.SetBytes(segSize)
	no := uint64(0)
	for b.Loop() {
		no++
		name := Segment{TLI: 1, No: no}.Name(segSize)
		b.StopTimer()
		p := writeFile(b, dir, name, makeSegment(1, no, segSize, 1))
		b.StartTimer()
		if _, err := ArchiveWAL(ctx, repo, p, name); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(p)
		b.StartTimer()
	}
}

func FuzzCheckSegment(f *testing.F) {
	seg := makeSegment(1, 3, 1<<20, 1)
	f.Add(seg[:64], "000000010000000000000003")
	f.Fuzz(func(t *testing.T, head []byte, name string) {
		if !pgmeta.IsSegment(name) {
			return
		}
		// The header decides the size: fuzz the header, pad to what it says.
		if len(head) >= longPageHeaderBytes {
			if h, err := parseSegmentHeader(head); err == nil && h.SegSize <= 1<<20 && int(h.SegSize) >= len(head) {
				head = append(head, make([]byte, int(h.SegSize)-len(head))...)
			}
		}
		if err := checkSegment(head, name); err == nil {
			h, _ := parseSegmentHeader(head)
			if int64(len(head)) != int64(h.SegSize) {
				t.Fatalf("accepted %d bytes for a %d-byte segment", len(head), h.SegSize)
			}
		}
	})
}
