package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/fips140"
	"crypto/hkdf"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

func newFIPSKey(t testing.TB) *Key {
	t.Helper()
	k, err := NewKeyFor(SuiteFIPS)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The FIPS suite seals, opens, and opens in place what either form sealed,
// for every size and whatever room the buffer has.
func TestFIPSSealOpen(t *testing.T) {
	k := newFIPSKey(t)
	if k.Suite() != SuiteFIPS || k.Overhead() != 52 || k.SealPrefix() != 24 {
		t.Fatalf("suite %s, overhead %d, prefix %d", k.Suite(), k.Overhead(), k.SealPrefix())
	}
	ad := []byte("blob")
	for _, n := range []int{0, 1, 16, 17, 1000, 1 << 20} {
		plain := bytes.Repeat([]byte{byte(n + 3)}, n)
		sealed := mustSeal(t, k, []byte("pre"), plain, ad)
		if !bytes.HasPrefix(sealed, []byte("pre")) || len(sealed) != 3+n+k.Overhead() {
			t.Fatalf("%d bytes: sealed length %d", n, len(sealed))
		}
		sealed = sealed[3:]
		if n > 16 && bytes.Contains(sealed, plain[:16]) {
			t.Fatalf("%d bytes: sealed data contains the plaintext", n)
		}
		if got, err := k.Open([]byte("out:"), sealed, ad); err != nil || !bytes.Equal(got, append([]byte("out:"), plain...)) {
			t.Fatalf("%d bytes: Open: %v", n, err)
		}
		for _, room := range []int{0, 28, 100} {
			buf := make([]byte, k.SealPrefix()+n, k.SealPrefix()+n+room)
			copy(buf[k.SealPrefix():], plain)
			inPlace := mustSealInPlace(t, k, buf, ad)
			if len(inPlace) != n+k.Overhead() {
				t.Fatalf("%d bytes: in-place sealed length %d", n, len(inPlace))
			}
			if room >= 28 && &inPlace[0] != &buf[0] {
				t.Fatalf("%d bytes, room %d: sealed into a new buffer", n, room)
			}
			if got, err := k.Open(nil, inPlace, ad); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%d bytes: Open of SealInPlace: %v", n, err)
			}
			if got, err := k.OpenInPlace(bytes.Clone(inPlace), ad); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%d bytes: OpenInPlace of SealInPlace: %v", n, err)
			}
			if _, err := k.OpenInPlace(inPlace, []byte("tree")); !errors.Is(err, ErrAuth) {
				t.Fatalf("%d bytes: opened in place under other associated data: %v", n, err)
			}
		}
	}
}

// Every byte of a FIPS sealed message is authenticated, and anything short,
// long, under another key, another suite or another ad fails with ErrAuth.
func TestFIPSOpenDetectsTampering(t *testing.T) {
	k := newFIPSKey(t)
	plain := []byte("the quick brown fox jumps over the lazy dog")
	sealed := mustSeal(t, k, nil, plain, []byte("ad"))
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x10
		if got, err := k.Open(nil, bad, []byte("ad")); !errors.Is(err, ErrAuth) || got != nil {
			t.Fatalf("byte %d flipped: Open = %q, %v; want ErrAuth", i, got, err)
		}
	}
	for _, n := range []int{0, 1, 24, 36, 51, 52, len(sealed) - 1} {
		if _, err := k.Open(nil, sealed[:n], []byte("ad")); !errors.Is(err, ErrAuth) {
			t.Errorf("truncated to %d bytes: %v, want ErrAuth", n, err)
		}
		if _, err := k.OpenInPlace(bytes.Clone(sealed[:n]), []byte("ad")); !errors.Is(err, ErrAuth) {
			t.Errorf("truncated to %d bytes, in place: %v, want ErrAuth", n, err)
		}
	}
	if _, err := k.Open(nil, append(bytes.Clone(sealed), 0), []byte("ad")); !errors.Is(err, ErrAuth) {
		t.Errorf("extended: %v, want ErrAuth", err)
	}
	for _, ad := range [][]byte{nil, []byte("a"), []byte("ad\x00")} {
		if _, err := k.Open(nil, sealed, ad); !errors.Is(err, ErrAuth) {
			t.Errorf("ad %q: %v, want ErrAuth", ad, err)
		}
	}
	if _, err := newFIPSKey(t).Open(nil, sealed, []byte("ad")); !errors.Is(err, ErrAuth) {
		t.Errorf("other key: %v, want ErrAuth", err)
	}
	// The same master key under the other suite derives another
	// encryption key: neither opens what the other sealed.
	if fips140.Enforced() {
		return // no XAES here
	}
	x, err := newKey(k.master[:], SuiteXAES)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Open(nil, sealed, []byte("ad")); !errors.Is(err, ErrAuth) {
		t.Errorf("XAES key of the same master opened a FIPS seal: %v", err)
	}
	if _, err := k.Open(nil, mustSeal(t, x, nil, plain, []byte("ad")), []byte("ad")); !errors.Is(err, ErrAuth) {
		t.Errorf("FIPS key opened an XAES seal of the same master: %v", err)
	}
}

// TestFIPSLayoutFixed pins the format docs/format.md describes, computed
// here with the standard library's primitives directly: the encryption
// subkey is HKDF-SHA-256(master, no salt, info), the message key
// HKDF-SHA-256(subkey, salt, "nestguard seal aes-256-gcm v1"), and the
// rest is AES-256-GCM nonce || ciphertext || tag.
func TestFIPSLayoutFixed(t *testing.T) {
	master := bytes.Repeat([]byte{0x42}, keySize)
	k, err := newKey(master, SuiteFIPS)
	if err != nil {
		t.Fatal(err)
	}
	sealed := mustSeal(t, k, nil, []byte("nestguard"), []byte("ad"))
	sub, _ := hkdf.Key(sha256.New, master, nil, "nestguard encryption aes-256-gcm-hkdf-sha-256 v1", 32)
	mk, _ := hkdf.Key(sha256.New, sub, sealed[:24], "nestguard seal aes-256-gcm v1", 32)
	block, _ := aes.NewCipher(mk)
	gcm, _ := cipher.NewGCMWithRandomNonce(block)
	got, err := gcm.Open(nil, nil, sealed[24:], []byte("ad"))
	if err != nil || string(got) != "nestguard" {
		t.Fatalf("independent open: %q, %v", got, err)
	}
	// Blob IDs and the chunker seed do not depend on the suite.
	if fips140.Enforced() {
		return // no XAES here
	}
	x, _ := newKey(master, SuiteXAES)
	if k.BlobID([]byte("a")) != x.BlobID([]byte("a")) || k.ChunkerSeed() != x.ChunkerSeed() {
		t.Error("subkeys other than the encryption key differ between suites")
	}
}

func TestFIPSSaltsDistinct(t *testing.T) {
	k := newFIPSKey(t)
	seen := make(map[[hgSaltSize]byte]bool)
	for range 1000 {
		s := [hgSaltSize]byte(mustSeal(t, k, nil, []byte("same"), nil))
		if seen[s] {
			t.Fatalf("salt %x repeated", s)
		}
		seen[s] = true
	}
}

func TestFIPSConcurrentUse(t *testing.T) {
	k := newFIPSKey(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			plain := []byte{byte(g)}
			for range 200 {
				if got, err := k.Open(nil, mustSeal(t, k, nil, plain, nil), nil); err != nil || !bytes.Equal(got, plain) {
					t.Errorf("concurrent round trip: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A FIPS key goes through a PBKDF2 slot and comes out the same FIPS key;
// the slot records its suite, authenticated.
func TestFIPSWrapUnwrap(t *testing.T) {
	k := newFIPSKey(t)
	pass := []byte("correct horse battery")
	s, err := WrapKey(k, pass, FastPBKDF2ParamsForTests(), SlotInfo{Repository: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Cipher != SuiteFIPS || len(s.Wrapped) != 32+52 {
		t.Fatalf("slot cipher %q, wrapped %d bytes", s.Cipher, len(s.Wrapped))
	}
	b, _ := json.Marshal(s)
	if !strings.Contains(string(b), `"cipher":"AES-256-GCM-HKDF-SHA-256","kdf":{"algorithm":"pbkdf2-sha256","time":0,"memory_kib":0,"threads":0,"iterations":1000,"salt":`) {
		t.Errorf("slot JSON %s", b)
	}
	var s2 Slot
	if err := json.Unmarshal(b, &s2); err != nil {
		t.Fatal(err)
	}
	k2, err := UnwrapKey(&s2, pass)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Suite() != SuiteFIPS || k2.master != k.master {
		t.Fatalf("unwrapped suite %s", k2.Suite())
	}
	// The KEK is PBKDF2-HMAC-SHA-256(passphrase, salt, iterations, 32).
	kek, _ := pbkdf2.Key(sha256.New, string(pass), s.KDF.Salt, 1000, 32)
	h, _ := newHKDFGCM(kek)
	if m, err := h.open(nil, s.Wrapped, s.ad()); err != nil || !bytes.Equal(m, k.master[:]) {
		t.Fatalf("independent unwrap: %v", err)
	}
	if _, err := UnwrapKey(&s2, []byte("correct horse batter!")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("wrong passphrase: %v", err)
	}
	if _, err := UnwrapKey(&s2, []byte("short")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("short passphrase: %v", err)
	}
	// Changing or dropping the cipher field breaks the slot.
	for _, c := range []string{"", SuiteXAES} {
		s3 := s2
		s3.Cipher = c
		if _, err := UnwrapKey(&s3, pass); err == nil {
			t.Errorf("cipher %q: unwrapped", c)
		}
	}
	if _, err := WrapKey(k, []byte("13 bytes long"), FastPBKDF2ParamsForTests(), SlotInfo{}); err == nil || !strings.Contains(err.Error(), "at least 14") {
		t.Errorf("13-byte passphrase: %v", err)
	}
	// Key files work for FIPS keys too.
	secret := bytes.Repeat([]byte{9}, KeyFileSecretSize)
	kp, _ := KeyFileKDFParams()
	fs, err := WrapKey(k, secret, kp, SlotInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if k3, err := UnwrapKey(fs, secret); err != nil || k3.master != k.master || k3.Suite() != SuiteFIPS {
		t.Fatalf("key file slot: %v", err)
	}
}

func TestPBKDF2ParamsBounded(t *testing.T) {
	p, err := DefaultPBKDF2Params()
	if err != nil || p.Validate() != nil || p.Iterations != 4_000_000 || len(p.Salt) != 32 {
		t.Fatalf("default %+v: %v / %v", p, err, p.Validate())
	}
	if p.Cost() != 500_000 {
		t.Errorf("default cost %d", p.Cost())
	}
	salt := make([]byte, 16)
	for _, bad := range []KDFParams{
		{Algorithm: KDFPBKDF2, Iterations: 999, Salt: salt},
		{Algorithm: KDFPBKDF2, Iterations: MaxKDFCost*8 + 1, Salt: salt},
		{Algorithm: KDFPBKDF2, Iterations: 1 << 31, Salt: salt},
		{Algorithm: KDFPBKDF2, Iterations: 1000, Salt: salt[:15]},
		{Algorithm: KDFPBKDF2, Iterations: 1000, Time: 1, Salt: salt},
		{Algorithm: KDFArgon2id, Time: 1, MemoryKiB: 64, Threads: 1, Iterations: 5, Salt: salt},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	most := KDFParams{Algorithm: KDFPBKDF2, Iterations: MaxKDFCost * 8, Salt: salt}
	if most.Validate() != nil || most.Cost() > MaxKDFCost {
		t.Errorf("most iterations: %v, cost %d", most.Validate(), most.Cost())
	}
}

// TestFIPS140Only runs the FIPS tests again in a process with
// GODEBUG=fips140=only, where Go's module refuses (with an error or a
// panic) every primitive that is not FIPS 140-3 approved: sealing,
// opening, wrapping and unwrapping a FIPS key must work there, and an
// XAES key or an Argon2id slot must be refused with ErrNotApproved, never
// panic.
func TestFIPS140Only(t *testing.T) {
	if fips140.Enforced() {
		testUnderFIPS140Only(t)
		return
	}
	if testing.Short() {
		t.Skip("re-runs the test binary")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^(TestFIPS|TestPBKDF2)", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "GODEBUG=fips140=only")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fips140=only checks done") {
		t.Fatalf("tests under GODEBUG=fips140=only: %v\n%s", err, out)
	}
}

func testUnderFIPS140Only(t *testing.T) {
	if _, err := NewKeyFor(SuiteXAES); !errors.Is(err, ErrNotApproved) {
		t.Errorf("NewKeyFor(XAES) under fips140=only: %v, want ErrNotApproved", err)
	}
	k := newFIPSKey(t)
	if _, err := WrapKey(k, []byte("a long enough passphrase"), FastKDFParamsForTests(), SlotInfo{}); !errors.Is(err, ErrNotApproved) {
		t.Errorf("Argon2id slot under fips140=only: %v, want ErrNotApproved", err)
	}
	salt := make([]byte, 32)
	argon := &Slot{Repository: "r", KDF: KDFParams{Algorithm: KDFArgon2id, Time: 1, MemoryKiB: 64, Threads: 1, Salt: salt}, Wrapped: make([]byte, 72)}
	if _, err := UnwrapKey(argon, []byte("a long enough passphrase")); !errors.Is(err, ErrNotApproved) {
		t.Errorf("unwrapping an Argon2id slot: %v, want ErrNotApproved", err)
	}
	xaesSlot := &Slot{Repository: "r", KDF: KDFParams{Algorithm: KDFKeyFile, Salt: salt}, Wrapped: make([]byte, 72)}
	if _, err := UnwrapKey(xaesSlot, make([]byte, 32)); !errors.Is(err, ErrNotApproved) {
		t.Errorf("unwrapping an XAES key file slot: %v, want ErrNotApproved", err)
	}
	p, err := DefaultPBKDF2Params()
	if err != nil {
		t.Fatal(err)
	}
	p.Iterations = 1000
	s, err := WrapKey(k, []byte("a long enough passphrase"), p, SlotInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if k2, err := UnwrapKey(s, []byte("a long enough passphrase")); err != nil || k2.master != k.master {
		t.Fatalf("PBKDF2 unwrap under fips140=only: %v", err)
	}
	if k.BlobID([]byte("x")).IsNull() {
		t.Fatal("null blob id")
	}
	t.Log("fips140=only checks done")
}

// Closing a FIPS key zeroes its encryption input key too.
func TestFIPSClose(t *testing.T) {
	k := newFIPSKey(t)
	h := k.enc.(*hkdfGCM)
	k.Close()
	if h.key != [keySize]byte{} {
		t.Error("SuiteFIPS input key not zeroed after Close")
	}
	if _, err := k.Seal(nil, []byte("x"), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Seal after Close: %v", err)
	}
}
