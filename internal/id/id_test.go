package id

import (
	"bytes"
	"strings"
	"testing"
)

// TestHasherFixed pins both object name hashes. The expected values come
// from the reference tools, sha256sum and b3sum; the long input spans many
// of BLAKE3's 1 KiB chunks, so it goes through the SIMD code.
func TestHasherFixed(t *testing.T) {
	long := make([]byte, 1<<20+17)
	for i := range long {
		long[i] = byte(i % 251)
	}
	for _, c := range []struct {
		alg  string
		data []byte
		want string
	}{
		{BLAKE3, nil, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
		{BLAKE3, []byte("nestguard"), "2a660731a82ae2686709e82c6cac4a6f36a5d90dadbb2e81c9964fdf6b0e3c63"},
		{BLAKE3, long, "3d54bb0bda4e08dd512d5a9b0651535ebd69de2aec4216ff1ce9dda252184296"},
		{SHA256, []byte("nestguard"), "f6979b7de6ea0747a70358b2cef28679748f78d5f05170f315f516fee32ce75a"},
		{SHA256, long, "f4bf9b8dec6e3e28b2ec33266145d244fe97a6bce1ec054ace053bab67d2ef9a"},
	} {
		h, err := NewHasher(c.alg)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Sum(c.data).String(); got != c.want {
			t.Errorf("%s Sum(%d bytes) = %s, want %s", c.alg, len(c.data), got, c.want)
		}
		// Streamed in uneven pieces, with the prefix's sum taken on the
		// way (as a pack's header takes its body's): the same name.
		s := h.New()
		var prefix []byte
		for off := 0; off < len(c.data); off += 4099 {
			s.Write(c.data[off:min(off+4099, len(c.data))])
			if prefix == nil {
				prefix = s.Sum(nil)
			}
		}
		if got := ID(s.Sum(nil)).String(); got != c.want {
			t.Errorf("%s streamed = %s, want %s", c.alg, got, c.want)
		}
		if want := h.Sum(c.data[:min(4099, len(c.data))]); prefix != nil && !bytes.Equal(prefix, want[:]) {
			t.Errorf("%s: the prefix's Sum differs from Sum of the prefix", c.alg)
		}
	}
	if Hash([]byte("nestguard")).String() != "f6979b7de6ea0747a70358b2cef28679748f78d5f05170f315f516fee32ce75a" {
		t.Error("Hash is not SHA-256")
	}
	if (Hasher{}).Sum([]byte("nestguard")) != Hash([]byte("nestguard")) {
		t.Error("the zero Hasher is not SHA-256's")
	}
	if _, err := NewHasher("SHA-1"); err == nil || !strings.Contains(err.Error(), `"SHA-1"`) {
		t.Errorf("unknown algorithm: err = %v, want one naming it", err)
	}
}
