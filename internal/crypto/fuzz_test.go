package crypto

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to Open: it must never panic, must fail with
// ErrAuth on anything that is not a genuine seal, and must open genuine seals.
func FuzzOpen(f *testing.F) {
	k, err := newKey(bytes.Repeat([]byte{7}, keySize), SuiteXAES)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add(make([]byte, Overhead-1))
	f.Add(make([]byte, Overhead))
	f.Add(mustSeal(f, k, nil, nil, nil))
	f.Add(mustSeal(f, k, nil, []byte("hello"), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, err := k.Open(nil, data, nil); err == nil {
			// The fuzzer cannot forge a tag; only seeds open.
			if len(got) != len(data)-Overhead {
				t.Fatalf("opened %d bytes to %d bytes of plaintext", len(data), len(got))
			}
		} else if !errors.Is(err, ErrAuth) {
			t.Fatalf("error does not wrap ErrAuth: %v", err)
		}
		// Whatever the input was, sealing it must round-trip.
		got, err := k.Open(nil, mustSeal(t, k, nil, data, nil), nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip of %d bytes: %v", len(data), err)
		}
	})
}

// FuzzUnwrapKey feeds arbitrary slot JSON fields to UnwrapKey: it must never
// panic, and bounded parameters keep each run cheap.
func FuzzUnwrapKey(f *testing.F) {
	p := FastKDFParamsForTests()
	f.Add("argon2id", uint32(1), uint32(64), uint8(1), p.Salt, make([]byte, keySize+Overhead))
	f.Add("argon2id", uint32(0), uint32(0), uint8(0), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, alg string, time, mem uint32, threads uint8, salt, wrapped []byte) {
		// Keep runs fast: large but valid parameters are tested elsewhere.
		if time > 2 || mem > 256 {
			return
		}
		s := &Slot{KDF: KDFParams{Algorithm: alg, Time: time, MemoryKiB: mem, Threads: threads, Salt: salt}, Wrapped: wrapped}
		if _, err := UnwrapKey(s, []byte("pw")); err == nil {
			t.Fatal("a random slot opened")
		}
	})
}
