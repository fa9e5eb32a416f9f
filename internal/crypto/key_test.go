package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
)

func newTestKey(t testing.TB) *Key {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := newTestKey(t)
	for _, n := range []int{0, 1, 15, 16, 17, 1000, 1 << 20} {
		plain := bytes.Repeat([]byte{byte(n)}, n)
		prefix := []byte("prefix")
		sealed := mustSeal(t, k, append([]byte(nil), prefix...), plain, nil)
		if !bytes.HasPrefix(sealed, prefix) {
			t.Fatalf("%d bytes: Seal did not append to dst", n)
		}
		sealed = sealed[len(prefix):]
		if len(sealed) != n+Overhead {
			t.Fatalf("%d bytes: sealed length %d, want %d", n, len(sealed), n+Overhead)
		}
		if n > 16 && bytes.Contains(sealed, plain[:16]) {
			t.Fatalf("%d bytes: sealed data contains the plaintext", n)
		}
		got, err := k.Open([]byte("out:"), sealed, nil)
		if err != nil {
			t.Fatalf("%d bytes: Open: %v", n, err)
		}
		if !bytes.Equal(got, append([]byte("out:"), plain...)) {
			t.Fatalf("%d bytes: Open returned different data", n)
		}
	}
}

// The in-place forms interoperate with Seal and Open, in both directions,
// whatever room the buffer has for the tag.
func TestSealOpenInPlace(t *testing.T) {
	k := newTestKey(t)
	for _, n := range []int{0, 1, 17, 1000, 1 << 20} {
		plain := bytes.Repeat([]byte{byte(n + 1)}, n)
		for _, room := range []int{0, tagSize, 100} {
			buf := make([]byte, k.SealPrefix()+n, k.SealPrefix()+n+room)
			copy(buf[k.SealPrefix():], plain)
			sealed := mustSealInPlace(t, k, buf, nil)
			if len(sealed) != n+Overhead {
				t.Fatalf("%d bytes: sealed length %d, want %d", n, len(sealed), n+Overhead)
			}
			if room >= tagSize && &sealed[0] != &buf[0] {
				t.Fatalf("%d bytes, room %d: sealed into a new buffer", n, room)
			}
			got, err := k.Open(nil, sealed, nil)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%d bytes: Open of SealInPlace: %v", n, err)
			}
			back, err := k.OpenInPlace(mustSeal(t, k, nil, plain, nil), nil)
			if err != nil || !bytes.Equal(back, plain) {
				t.Fatalf("%d bytes: OpenInPlace of Seal: %v", n, err)
			}
			sealed[len(sealed)-1] ^= 1
			if _, err := k.OpenInPlace(sealed, nil); !errors.Is(err, ErrAuth) {
				t.Fatalf("%d bytes: tampered OpenInPlace: %v, want ErrAuth", n, err)
			}
		}
	}
	if _, err := k.OpenInPlace(make([]byte, Overhead-1), nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("short OpenInPlace: %v, want ErrAuth", err)
	}
}

func TestOpenDetectsTampering(t *testing.T) {
	k := newTestKey(t)
	plain := []byte("the quick brown fox jumps over the lazy dog")
	sealed := mustSeal(t, k, nil, plain, nil)
	regions := map[string]int{
		"nonce start":      0,
		"nonce first half": 11,
		"nonce last half":  12,
		"nonce end":        nonceSize - 1,
		"ciphertext":       nonceSize,
		"ciphertext end":   nonceSize + len(plain) - 1,
		"tag":              len(sealed) - tagSize,
		"tag end":          len(sealed) - 1,
	}
	for name, i := range regions {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(sealed)
			bad[i] ^= bit
			if got, err := k.Open(nil, bad, nil); !errors.Is(err, ErrAuth) || got != nil {
				t.Errorf("%s (byte %d, bit %#x) flipped: Open = %q, %v; want ErrAuth", name, i, bit, got, err)
			}
		}
	}
	for _, n := range []int{0, 1, nonceSize, Overhead - 1, Overhead, len(sealed) - 1} {
		if _, err := k.Open(nil, sealed[:n], nil); !errors.Is(err, ErrAuth) {
			t.Errorf("truncated to %d bytes: err = %v, want ErrAuth", n, err)
		}
	}
	if _, err := k.Open(nil, nil, nil); !errors.Is(err, ErrAuth) {
		t.Errorf("nil input: err = %v, want ErrAuth", err)
	}
	if _, err := k.Open(nil, append(bytes.Clone(sealed), 0), nil); !errors.Is(err, ErrAuth) {
		t.Errorf("extended input: err = %v, want ErrAuth", err)
	}
	if _, err := newTestKey(t).Open(nil, sealed, nil); !errors.Is(err, ErrAuth) {
		t.Errorf("other key: err = %v, want ErrAuth", err)
	}
	if got, err := k.Open(nil, sealed, nil); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("untampered input no longer opens: %q, %v", got, err)
	}
}

func TestSealNoncesDistinct(t *testing.T) {
	k := newTestKey(t)
	seen := make(map[[nonceSize]byte]bool)
	var prev []byte
	for range 1000 {
		s := mustSeal(t, k, nil, []byte("same plaintext"), nil)
		if bytes.Equal(s, prev) {
			t.Fatal("two seals of the same plaintext are identical")
		}
		prev = s
		n := [nonceSize]byte(s[:nonceSize])
		if seen[n] {
			t.Fatalf("nonce %x repeated", n)
		}
		seen[n] = true
	}
}

func TestBlobID(t *testing.T) {
	k1, k2 := newTestKey(t), newTestKey(t)
	a, b := []byte("chunk a"), []byte("chunk b")
	if first, again := k1.BlobID(a), k1.BlobID(bytes.Clone(a)); first != again {
		t.Error("BlobID is not deterministic")
	}
	if k1.BlobID(a) == k1.BlobID(b) {
		t.Error("different data got the same BlobID")
	}
	if k1.BlobID(a) == k2.BlobID(a) {
		t.Error("different keys gave the same BlobID")
	}
	if k1.BlobID(nil).IsNull() {
		t.Error("BlobID of empty data is the null ID")
	}
	// The ID must survive the key going through a key slot: it is what
	// deduplication across sessions depends on.
	s, err := WrapKey(k1, []byte("pw"), FastKDFParamsForTests(), SlotInfo{})
	if err != nil {
		t.Fatal(err)
	}
	k3, err := UnwrapKey(s, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if k3.BlobID(a) != k1.BlobID(a) || k3.ChunkerSeed() != k1.ChunkerSeed() {
		t.Error("unwrapped key derives different subkeys")
	}
}

// TestSubkeysFixed pins the HKDF-SHA-256 derivation: a change to an info
// string or to the derivation would make existing repositories unreadable
// and change every blob ID. The expected values were computed independently
// (Python hmac/hashlib, RFC 5869 with an empty salt).
func TestSubkeysFixed(t *testing.T) {
	k, err := newKey(bytes.Repeat([]byte{0x42}, keySize), SuiteXAES)
	if err != nil {
		t.Fatal(err)
	}
	const (
		wantEncKey = "6dcf3983e56fbb212f4e9ec5263a43cc888f47ba4cc4aecd16d18e6012b62dbb"
		wantID     = "eaec2c7b276646e71d0885c7a16fc6bb4b7c71ba8bc437130a3e5b9c98fe0948"
		wantSeed   = "cf21c20a13c31ecf0113da17a92493830b0e391b90812a1ee82e43704d8037f9"
	)
	enc, err := newXAES(unhex(t, wantEncKey))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := enc.open(nil, mustSeal(t, k, nil, []byte("x"), nil), nil); err != nil || string(got) != "x" {
		t.Errorf("Seal does not use the expected encryption subkey: %q, %v", got, err)
	}
	if got := k.BlobID([]byte("nestguard")).String(); got != wantID {
		t.Errorf("BlobID = %s, want %s", got, wantID)
	}
	seed := k.ChunkerSeed()
	if got := hex.EncodeToString(seed[:]); got != wantSeed {
		t.Errorf("ChunkerSeed = %s, want %s", got, wantSeed)
	}
	if bytes.Equal(seed[:], k.idKey) || bytes.Equal(seed[:], k.master[:]) {
		t.Error("subkeys are not distinct")
	}
}

func TestKeyConcurrentUse(t *testing.T) {
	k := newTestKey(t)
	want := k.BlobID([]byte("data"))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			plain := []byte{byte(g)}
			for range 200 {
				if k.BlobID([]byte("data")) != want {
					t.Error("BlobID differs under concurrent use")
					return
				}
				got, err := k.Open(nil, mustSeal(t, k, nil, plain, nil), nil)
				if err != nil || !bytes.Equal(got, plain) {
					t.Errorf("concurrent round trip: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// What is sealed under one associated data does not open under another,
// in either form (copied, or in place): a sealed thing is bound to what it
// was stored as.
func TestSealBindsAssociatedData(t *testing.T) {
	k := newTestKey(t)
	plain := []byte("a data blob that looks like a snapshot")
	sealed := mustSeal(t, k, nil, plain, []byte("blob data"))
	for _, ad := range [][]byte{nil, []byte("snapshot"), []byte("blob dat"), []byte("blob data\x00")} {
		if _, err := k.Open(nil, sealed, ad); !errors.Is(err, ErrAuth) {
			t.Errorf("opened under associated data %q: %v", ad, err)
		}
		if _, err := k.OpenInPlace(bytes.Clone(sealed), ad); !errors.Is(err, ErrAuth) {
			t.Errorf("opened in place under associated data %q: %v", ad, err)
		}
	}
	buf := append(make([]byte, k.SealPrefix()), plain...)
	inPlace := mustSealInPlace(t, k, buf, []byte("tree"))
	if got, err := k.Open(nil, inPlace, []byte("tree")); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("sealed in place, opened: %q %v", got, err)
	}
	if _, err := k.Open(nil, inPlace, []byte("data")); !errors.Is(err, ErrAuth) {
		t.Errorf("sealed in place as tree, opened as data: %v", err)
	}
}

func mustSeal(tb testing.TB, k *Key, dst, plaintext, ad []byte) []byte {
	tb.Helper()
	out, err := k.Seal(dst, plaintext, ad)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func mustSealInPlace(tb testing.TB, k *Key, buf, ad []byte) []byte {
	tb.Helper()
	out, err := k.SealInPlace(buf, ad)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// After Close the Key's own key material is zero, and every use fails
// with ErrClosed instead of panicking or sealing under a zero key.
func TestKeyClose(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	blake, err := k.BlobIDFunc(BlobIDBLAKE3)
	if err != nil {
		t.Fatal(err)
	}
	sealed := mustSeal(t, k, nil, []byte("secret"), nil)
	if k.BlobID([]byte("x")) == (id.ID{}) || blake([]byte("x")) == (id.ID{}) {
		t.Fatal("blob id is zero before Close")
	}
	k.Close()
	k.Close() // twice is harmless

	zero := func(name string, b []byte) {
		t.Helper()
		if len(b) == 0 {
			t.Fatalf("%s: empty", name)
		}
		for _, c := range b {
			if c != 0 {
				t.Errorf("%s not zeroed after Close: %x", name, b)
				return
			}
		}
	}
	zero("master key", k.master[:])
	zero("blob id key", k.idKey)
	zero("chunker seed", k.chunker[:])
	x := k.enc.(*xaes)
	zero("CMAC subkey", x.k1[:])
	if x.block != nil {
		t.Error("AES block still referenced after Close")
	}
	if !k.Closed() {
		t.Error("Closed() is false after Close")
	}

	if _, err := k.Seal(nil, []byte("x"), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Seal after Close: %v, want ErrClosed", err)
	}
	buf := make([]byte, k.SealPrefix()+4)
	if _, err := k.SealInPlace(buf, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("SealInPlace after Close: %v, want ErrClosed", err)
	}
	if _, err := k.Open(nil, sealed, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close: %v, want ErrClosed", err)
	}
	if _, err := k.OpenInPlace(slices.Clone(sealed), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("OpenInPlace after Close: %v, want ErrClosed", err)
	}
	if _, err := k.BlobIDFunc(""); !errors.Is(err, ErrClosed) {
		t.Errorf("BlobIDFunc after Close: %v, want ErrClosed", err)
	}
	if got := k.BlobID([]byte("x")); got != (id.ID{}) {
		t.Errorf("BlobID after Close = %v, want the zero ID", got)
	}
	if got := blake([]byte("x")); got != (id.ID{}) {
		t.Errorf("BLAKE3 blob id after Close = %v, want the zero ID", got)
	}
	if _, err := WrapKey(k, []byte("pw"), FastKDFParamsForTests(), SlotInfo{}); !errors.Is(err, ErrClosed) {
		t.Errorf("WrapKey of a closed key: %v, want ErrClosed", err)
	}
}

// TestAuditKeyIsItsOwn checks that the audit key seals apart from the
// master key, is the same for the same master key, and outlives it.
func TestAuditKeyIsItsOwn(t *testing.T) {
	for _, suite := range []string{SuiteXAES, SuiteFIPS} {
		k, err := NewKeyFor(suite)
		if err != nil {
			t.Fatal(err)
		}
		a1, err := k.AuditKey()
		if err != nil {
			t.Fatal(err)
		}
		a2, _ := k.AuditKey()
		sealed, err := a1.Seal(nil, []byte("record"), []byte("ad"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Open(nil, sealed, []byte("ad")); err == nil {
			t.Errorf("%s: the master key opens what the audit key sealed", suite)
		}
		k.Close()
		if _, err := k.AuditKey(); err == nil {
			t.Errorf("%s: AuditKey of a closed key", suite)
		}
		if got, err := a2.Open(nil, sealed, []byte("ad")); err != nil || string(got) != "record" {
			t.Errorf("%s: a second audit key of the same master: %q, %v", suite, got, err)
		}
		if a1.Suite() != suite {
			t.Errorf("audit key suite %s, want %s", a1.Suite(), suite)
		}
		a1.Close()
		a2.Close()
	}
}
