package crypto

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"runtime"
	"runtime/debug"

	"golang.org/x/crypto/argon2"
)

// The key derivation functions of key slots.
const (
	// KDFArgon2id stretches a human passphrase (RFC 9106).
	KDFArgon2id = "argon2id"
	// KDFKeyFile derives the KEK from a machine key file's random 256-bit
	// secret with HKDF-SHA-256. Stretching adds nothing to a secret that
	// cannot be guessed, and skipping it makes unlocking take microseconds,
	// which matters for PostgreSQL's archive_command (one process per WAL
	// segment). Only secrets that nestguard generated use it.
	KDFKeyFile = "hkdf-sha256"
	// KeyFileSecretSize is the size of a key file's secret.
	KeyFileSecretSize = 32
)

// Bounds on KDF parameters read from a key slot. Slots are untrusted input
// that anyone with write access to the storage can plant, and under Object
// Lock the owner cannot delete them: without bounds one hostile slot could
// make every unlock allocate gigabytes for minutes. A slot within them
// costs at most MaxKDFCost, a few seconds and 1 GiB; the default costs a
// twentieth of that.
const (
	maxKDFTime      = 16
	maxKDFMemoryKiB = 1 << 20 // 1 GiB
	maxKDFThreads   = 64
	minSaltSize     = 16
	maxSaltSize     = 1024
	saltSize        = 32

	// MaxKDFCost bounds Cost: 4 passes over 1 GiB.
	MaxKDFCost = 4 * maxKDFMemoryKiB
)

// KDFParams are the parameters of the passphrase KDF, stored in each key slot.
type KDFParams struct {
	Algorithm string `json:"algorithm"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
}

// DefaultKDFParams returns the parameters for new key slots: Argon2id with
// 3 passes over 64 MiB on 4 threads, and a fresh random salt. Deriving a key
// takes a few tenths of a second on purpose: that is what each passphrase
// guess costs an attacker.
func DefaultKDFParams() (KDFParams, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return KDFParams{}, fmt.Errorf("generating KDF salt: %w", err)
	}
	return KDFParams{Algorithm: KDFArgon2id, Time: 3, MemoryKiB: 64 << 10, Threads: 4, Salt: salt}, nil
}

// FastKDFParamsForTests returns cheap Argon2id parameters (1 pass over
// 64 KiB) with a fresh random salt. They give no protection against guessing:
// use them only in tests.
func FastKDFParamsForTests() KDFParams {
	salt := make([]byte, saltSize)
	rand.Read(salt) // never fails: crypto/rand crashes the program instead
	return KDFParams{Algorithm: KDFArgon2id, Time: 1, MemoryKiB: 64, Threads: 1, Salt: salt}
}

// KeyFileKDFParams returns the parameters for a key slot opened by a
// generated key file: HKDF-SHA-256 with a fresh random salt.
func KeyFileKDFParams() (KDFParams, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return KDFParams{}, fmt.Errorf("generating KDF salt: %w", err)
	}
	return KDFParams{Algorithm: KDFKeyFile, Salt: salt}, nil
}

// Cost is the work deriving a key with p takes, in KiB of memory times
// passes (Argon2id's time and memory grow with both). An HKDF key file
// costs 1.
func (p *KDFParams) Cost() uint64 {
	if p.Algorithm == KDFKeyFile {
		return 1
	}
	return max(1, uint64(p.Time)*uint64(p.MemoryKiB))
}

// Validate rejects parameters that are unknown or absurd, before any
// expensive work is done.
func (p *KDFParams) Validate() error { return p.validate() }

func (p *KDFParams) validate() error {
	if p.Algorithm == KDFKeyFile {
		if p.Time != 0 || p.MemoryKiB != 0 || p.Threads != 0 {
			return fmt.Errorf("%s takes no time, memory or threads parameters", KDFKeyFile)
		}
		if len(p.Salt) < minSaltSize || len(p.Salt) > maxSaltSize {
			return fmt.Errorf("%s salt is %d bytes: want %d to %d", KDFKeyFile, len(p.Salt), minSaltSize, maxSaltSize)
		}
		return nil
	}
	switch {
	case p.Algorithm != KDFArgon2id:
		return fmt.Errorf("unknown key derivation algorithm %q (this nestguard supports %q and %q)", p.Algorithm, KDFArgon2id, KDFKeyFile)
	case p.Time < 1 || p.Time > maxKDFTime:
		return fmt.Errorf("argon2id time %d out of range: want 1 to %d", p.Time, maxKDFTime)
	case p.Threads < 1 || p.Threads > maxKDFThreads:
		return fmt.Errorf("argon2id threads %d out of range: want 1 to %d", p.Threads, maxKDFThreads)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB:
		// Argon2 needs 8 KiB per lane (RFC 9106, 3.1).
		return fmt.Errorf("argon2id memory %d KiB out of range: want %d KiB (8 per thread) to %d KiB", p.MemoryKiB, 8*uint32(p.Threads), maxKDFMemoryKiB)
	case p.Cost() > MaxKDFCost:
		return fmt.Errorf("argon2id cost %d passes over %d KiB is over the bound of %d KiB-passes", p.Time, p.MemoryKiB, uint64(MaxKDFCost))
	case len(p.Salt) < minSaltSize || len(p.Salt) > maxSaltSize:
		return fmt.Errorf("argon2id salt is %d bytes: want %d to %d", len(p.Salt), minSaltSize, maxSaltSize)
	}
	return nil
}

// deriveKEK derives the key-encryption key from passphrase. p must be valid.
func (p *KDFParams) deriveKEK(passphrase []byte) []byte {
	if p.Algorithm == KDFKeyFile {
		k, err := hkdf.Key(sha256.New, passphrase, p.Salt, "nestguard key file v1", keySize)
		if err != nil {
			panic(err) // only for lengths beyond 255*32 bytes; keySize is 32
		}
		return k
	}
	if p.Threads > 1 {
		prefault(int(p.MemoryKiB) << 10)
	}
	k := argon2.IDKey(passphrase, p.Salt, p.Time, p.MemoryKiB, p.Threads, keySize)
	// Argon2id's memory is garbage now. Returned to the system at once, it
	// does not stay in the RSS of a backup under what the work needs.
	debug.FreeOSMemory()
	return k
}

// prefault maps n bytes of heap from one thread and frees them again, so
// Argon2id's lanes reuse memory that is already mapped. When the lanes
// take their first-touch page faults in parallel instead, unlocking takes
// twice as long on a virtual machine (0.20 s against 0.10 s with 64 MiB on
// two cores, nearly all of it in the kernel). The result is the same; only
// the faults move.
func prefault(n int) {
	touch(make([]byte, n+64<<10)) // the lanes' blocks plus Argon2's slack
	runtime.GC()                  // free it now, before argon2 asks for it
}

//go:noinline
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
}
