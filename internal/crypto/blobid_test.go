package crypto

import (
	"bytes"
	"strings"
	"testing"
)

func TestBlobIDFunc(t *testing.T) {
	k1, k2 := newTestKey(t), newTestKey(t)
	b3, err := k1.BlobIDFunc(BlobIDBLAKE3)
	if err != nil {
		t.Fatal(err)
	}
	b3other, err := k2.BlobIDFunc(BlobIDBLAKE3)
	if err != nil {
		t.Fatal(err)
	}
	a, b := []byte("chunk a"), []byte("chunk b")
	if b3(a) != b3(bytes.Clone(a)) {
		t.Error("BLAKE3 blob id is not deterministic")
	}
	if b3(a) == b3(b) {
		t.Error("different data got the same BLAKE3 blob id")
	}
	if b3(a) == b3other(a) {
		t.Error("different keys gave the same BLAKE3 blob id")
	}
	if b3(a) == k1.BlobID(a) {
		t.Error("BLAKE3 and HMAC-SHA-256 gave the same blob id")
	}
	for _, name := range []string{"", BlobIDHMACSHA256} {
		f, err := k1.BlobIDFunc(name)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if f(a) != k1.BlobID(a) {
			t.Errorf("%q is not HMAC-SHA-256", name)
		}
	}
	if _, err := k1.BlobIDFunc("SHA-1"); err == nil || !strings.Contains(err.Error(), `"SHA-1"`) {
		t.Errorf("unknown algorithm: err = %v, want one naming it", err)
	}
}

// TestBlobIDBLAKE3Fixed pins the BLAKE3 blob id: its HKDF subkey and keyed
// BLAKE3 itself. The expected values come from Python (RFC 5869 HKDF with
// hmac/hashlib) and the reference implementation's b3sum --keyed; the long
// input spans many 1 KiB chunks, so it goes through the SIMD code.
func TestBlobIDBLAKE3Fixed(t *testing.T) {
	k, err := newKey(bytes.Repeat([]byte{0x42}, keySize), SuiteXAES)
	if err != nil {
		t.Fatal(err)
	}
	f, err := k.BlobIDFunc(BlobIDBLAKE3)
	if err != nil {
		t.Fatal(err)
	}
	long := make([]byte, 1<<20+17)
	for i := range long {
		long[i] = byte(i % 251)
	}
	for _, c := range []struct {
		data []byte
		want string
	}{
		{[]byte("nestguard"), "d72d36d6f06bae14007bc6efa0645714631d57c49b5c8ee92a0f6f589781a756"},
		{long, "60f1246545f872f20228732514d6884c8a0157fc5420f54a75b3b57c56909cae"},
	} {
		if got := f(c.data).String(); got != c.want {
			t.Errorf("BLAKE3 blob id of %d bytes = %s, want %s", len(c.data), got, c.want)
		}
	}
}
