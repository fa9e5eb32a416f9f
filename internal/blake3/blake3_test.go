package blake3

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	reference "lukechampine.com/blake3"
)

// vectors are BLAKE3's test inputs (byte i is i % 251) hashed by b3sum,
// the reference implementation: plain, and keyed with the official test
// key. The first rows are those of BLAKE3's test_vectors.json.
var vectors = []struct {
	n            int
	plain, keyed string
}{
	{0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262", "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"},
	{1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213", "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b"},
	{1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11", "c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e"},
	{1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7", "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4"},
	{1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444", "357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69"},
	{2049, "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030", "9f29700902f7c86e514ddc4df1e3049f258b2472b6dd5267f61bf13983b78dd5"},
	{16383, "7529418ecb789a30254899f229522ccde05234d2019c5ec5072bc4685a57658d", "94a774bca8bbc4b2d6c4ff008c7b52c972be8d75d109c8e9b71198caa5b290a3"},
	{16384, "f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4", "9e9fc4eb7cf081ea7c47d1807790ed211bfec56aa25bb7037784c13c4b707b0d"},
	{16385, "1dabe216be2578830263b049de1639f39f05a4da616b9b78c7a5e4e41662fd1f", "9f1e8750b485576aa8af42e403bfb340665b45a952799d0155756c994db7dfd2"},
	{31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47", "efa53b389ab67c593dba624d898d0f7353ab99e4ac9d42302ee64cbf9939a419"},
	{32769, "da589428d9b32c97658a04a21c0c8a38aad2ac402120819d956fd6d62bbfa36e", "caba9d7a96f6fbc99e3ce6a55a17bb238442d0c420e4426e19e432074b47e4ae"},
	{102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085", "1c35d1a5811083fd7119f5d5d1ba027b4d01c0c6c49fb6ff2cf75393ea5db4a7"},
	{1048583, "89541f1047f7a56806fe16efda4c2cdc45f141c838e413019f0124189fa55232", "68d3302957232d08ad0b33ca16117057d2062086dd8cdb350f105104e432a87c"},
}

const testKey = "whats the Elvish word for friend"

// writeInPieces writes data to h in pieces of the given sizes, cycled.
func writeInPieces(h *Hasher, data []byte, pieces []int) {
	for i := 0; len(data) > 0; i++ {
		n := min(pieces[i%len(pieces)], len(data))
		h.Write(data[:n])
		data = data[n:]
	}
}

func TestVectors(t *testing.T) {
	key := (*[KeySize]byte)([]byte(testKey))
	for _, v := range vectors {
		data := make([]byte, v.n)
		for i := range data {
			data[i] = byte(i % 251)
		}
		if got := Sum256(data); hex.EncodeToString(got[:]) != v.plain {
			t.Errorf("Sum256 of %d bytes: %x, want %s", v.n, got, v.plain)
		}
		for _, pieces := range [][]int{{1 << 30}, {1}, {63, 1000, 16384, 5}, {16384}, {16385}} {
			for _, c := range []struct {
				h    *Hasher
				want string
			}{{New(), v.plain}, {NewKeyed(key), v.keyed}} {
				writeInPieces(c.h, data, pieces)
				if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
					t.Errorf("%d bytes in pieces of %v (keyed %v): %s, want %s", v.n, pieces, c.h.flags != 0, got, c.want)
				}
			}
		}
	}
}

// TestAgainstReference compares random inputs and write patterns with
// lukechampine.com/blake3's own Hasher, and checks that Sum leaves the
// state alone, Reset starts over with the key, and Clone is independent.
func TestAgainstReference(t *testing.T) {
	t.Run("sixteen at once", testAgainstReference) // where the CPU has AVX-512
	defer func(was bool) { have16 = was }(have16)
	have16 = false
	t.Run("guts", testAgainstReference)
}

func testAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	var key [KeySize]byte
	copy(key[:], data[:KeySize])
	for round := range 200 {
		n := rng.IntN(len(data))
		if round%2 == 0 {
			n = rng.IntN(70000)
		}
		in := data[len(data)-n:]
		ref := reference.New(Size, key[:])
		ref.Write(in)
		want := ref.Sum(nil)
		h := NewKeyed(&key)
		h.Write([]byte("garbage"))
		h.Reset()
		pieces := []int{1 + rng.IntN(40000), 1 + rng.IntN(300), 1 + rng.IntN(1<<20)}
		half := n / 2
		writeInPieces(h, in[:half], pieces)
		prefix := h.Sum(nil)
		c := h.Clone()
		writeInPieces(h, in[half:], pieces)
		if got := h.Sum(nil); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes in pieces of %v: %x, want %x", n, pieces, got, want)
		}
		ref = reference.New(Size, key[:])
		ref.Write(in[:half])
		if !bytes.Equal(prefix, ref.Sum(nil)) || !bytes.Equal(c.Sum(nil), prefix) {
			t.Fatalf("the sum of a %d-byte prefix is wrong, or a clone changed", half)
		}
		if Sum256(in) != reference.Sum256(in) {
			t.Fatalf("Sum256 of %d bytes differs", n)
		}
	}
}

func TestClear(t *testing.T) {
	var key [KeySize]byte
	key[0] = 1
	h := NewKeyed(&key)
	h.Write(make([]byte, 40000))
	h.Clear()
	if h.key != ([8]uint32{}) || h.stack[4] != ([8]uint32{}) {
		t.Error("Clear left the key or the state")
	}
}

func BenchmarkSum(b *testing.B) {
	for _, n := range []int{256, 4096, 16384, 1 << 20} {
		data := make([]byte, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := New()
			b.SetBytes(int64(n))
			for b.Loop() {
				h.Reset()
				h.Write(data)
				h.Sum(nil)
			}
		})
	}
}
