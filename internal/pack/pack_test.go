package pack

import (
	"bytes"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
)

func TestHeaderRoundTrip(t *testing.T) {
	blobs := []Blob{
		{Type: 0, ID: id.Hash([]byte("a")), Offset: 0, Length: 100, RawLength: 200},
		{Type: 1, ID: id.Hash([]byte("b")), Offset: 100, Length: 7, RawLength: 3},
	}
	got, err := DecodeHeader(EncodeHeader(blobs))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != blobs[0] || got[1] != blobs[1] {
		t.Fatalf("round trip: got %+v want %+v", got, blobs)
	}
	if err := Check(got, 50, 107+50+TrailerSize); err != nil {
		t.Fatal(err)
	}
	if err := Check(got, 50, 107+50); err == nil {
		t.Fatal("Check accepted a short pack")
	}
}

func TestDecodeHeaderRejects(t *testing.T) {
	good := EncodeHeader([]Blob{{ID: id.Hash(nil), Length: 1}})
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("XXXX"), good[4:]...),
		"version":   append(append([]byte{}, good[:4]...), append([]byte{9}, good[5:]...)...),
		"truncated": good[:len(good)-1],
		"extra":     append(append([]byte{}, good...), 0),
	} {
		if _, err := DecodeHeader(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTrailer(t *testing.T) {
	tr := Trailer(1234)
	n, err := ParseTrailer(tr, 5000)
	if err != nil || n != 1234 {
		t.Fatalf("got %d, %v", n, err)
	}
	if _, err := ParseTrailer(tr, 1000); err == nil {
		t.Fatal("accepted header longer than pack")
	}
	bad := bytes.Clone(tr)
	bad[7] ^= 1
	if _, err := ParseTrailer(bad, 5000); err == nil {
		t.Fatal("accepted bad magic")
	}
}

func FuzzDecodeHeader(f *testing.F) {
	f.Add(EncodeHeader(nil))
	f.Add(EncodeHeader([]Blob{{ID: id.Hash([]byte("x")), Length: 10, RawLength: 5}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		blobs, err := DecodeHeader(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeHeader(blobs), b) {
			t.Fatal("decoded header does not re-encode to the same bytes")
		}
	})
}

func FuzzParseTrailer(f *testing.F) {
	f.Add(Trailer(10), int64(100))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		n, err := ParseTrailer(b, size)
		if err == nil && (n <= 0 || int64(n) > size-TrailerSize) {
			t.Fatalf("accepted header length %d for pack size %d", n, size)
		}
	})
}
