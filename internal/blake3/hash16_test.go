package blake3

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"unsafe"

	"lukechampine.com/blake3/guts"
)

// TestHash16 checks the sixteen-way compression against guts, the
// reference, on chunks (counters across a 2^32 boundary too) and on
// parents, plain and keyed.
func TestHash16(t *testing.T) {
	if !have16 {
		t.Skip("no AVX-512 here")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var key [8]uint32
	for i := range key {
		key[i] = rng.Uint32()
	}
	for _, k := range []struct {
		key   *[8]uint32
		flags uint32
	}{{&guts.IV, 0}, {&key, guts.FlagKeyedHash}} {
		for _, counter := range []uint64{0, 16, 1<<32 - 5, 1 << 40} {
			buf := make([]byte, 16*guts.ChunkSize)
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			var out [16][8]uint32
			var ctr [2][16]uint32
			counters(&ctr, counter, 1)
			hash16(&out, &buf[0], guts.ChunkSize, guts.ChunkSize/guts.BlockSize, k.key, &ctr, uint64(k.flags), guts.FlagChunkStart, guts.FlagChunkEnd)
			for l := range 16 {
				want := guts.ChainingValue(guts.CompressChunk(buf[l*guts.ChunkSize:(l+1)*guts.ChunkSize], k.key, counter+uint64(l), k.flags))
				if out[l] != want {
					t.Fatalf("chunk %d (counter %d, flags %d): %x, want %x", l, counter, k.flags, out[l], want)
				}
			}
			// Parents: the 16 CVs above and 16 more, pairs side by side.
			var cvs [32][8]uint32
			for i := range cvs {
				for j := range cvs[i] {
					cvs[i][j] = rng.Uint32()
				}
			}
			counters(&ctr, 0, 0)
			hash16(&out, (*byte)(unsafe.Pointer(&cvs)), 64, 1, k.key, &ctr, uint64(k.flags|guts.FlagParent), 0, 0)
			for l := range 16 {
				want := guts.ChainingValue(guts.ParentNode(cvs[2*l], cvs[2*l+1], k.key, k.flags))
				if out[l] != want {
					t.Fatalf("parent %d (flags %d): %x, want %x", l, k.flags, out[l], want)
				}
			}
		}
	}
}

// TestGenerated: hash16_amd64.s is what gen.go writes.
func TestGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	out := filepath.Join(t.TempDir(), "hash16.s")
	if b, err := exec.Command("go", "run", "gen.go", "-out", out).CombinedOutput(); err != nil {
		t.Fatalf("go run gen.go: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile("hash16_amd64.s"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("hash16_amd64.s is not what gen.go writes (%v): run go generate ./internal/blake3", err)
	}
}
