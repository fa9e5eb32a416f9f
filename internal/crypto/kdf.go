package crypto

import (
	"crypto/fips140"
	"crypto/hkdf"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"runtime"
	"runtime/debug"

	"golang.org/x/crypto/argon2"

	"github.com/nestguard/nestguard/internal/hugemem"
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
	// KDFPBKDF2 stretches a passphrase with PBKDF2-HMAC-SHA-256 (NIST SP
	// 800-132, RFC 8018): the passphrase KDF of FIPS repositories, since
	// Argon2id is not FIPS 140-3 approved.
	KDFPBKDF2 = "pbkdf2-sha256"
	// MinPBKDF2Passphrase is the shortest passphrase a PBKDF2 slot is made
	// with: the passphrase is PBKDF2's HMAC key, and FIPS 140-3 (IG C.M)
	// approves HMAC keys of 112 bits or more only.
	MinPBKDF2Passphrase = 112 / 8
	// KeyFileSecretSize is the size of a key file's secret.
	KeyFileSecretSize = 32
)

// Bounds on KDF parameters read from a key slot. Slots are untrusted input
// that anyone with write access to the storage can plant, and under Object
// Lock the owner cannot delete them: without bounds one hostile slot could
// make every unlock allocate gigabytes for minutes. A slot within them
// costs at most MaxKDFCost, a few seconds and 1 GiB; the default costs
// about a fourteenth of that (288 of 4,096 MiB-passes).
const (
	maxKDFTime      = 16
	maxKDFMemoryKiB = 1 << 20 // 1 GiB
	maxKDFThreads   = 64
	minSaltSize     = 16
	maxSaltSize     = 1024
	saltSize        = 32

	// MaxKDFCost bounds Cost: 4 passes over 1 GiB.
	MaxKDFCost = 4 * maxKDFMemoryKiB

	// PBKDF2 iterations: new slots use defaultPBKDF2Iterations (about half
	// a second on one core with SHA-NI); a slot is refused below SP
	// 800-132's minimum of 1000 and above what MaxKDFCost allows.
	defaultPBKDF2Iterations = 4_000_000
	minPBKDF2Iterations     = 1000
	// pbkdf2PerCost is how many PBKDF2-HMAC-SHA-256 iterations count as
	// one unit of Cost (a KiB-pass of Argon2id): measured, one iteration
	// takes about a tenth of an Argon2id KiB-pass, and rounding to 8 counts
	// PBKDF2 a little dearer than it is.
	pbkdf2PerCost       = 8
	maxPBKDF2Iterations = MaxKDFCost * pbkdf2PerCost
)

// KDFParams are the parameters of the passphrase KDF, stored in each key slot.
type KDFParams struct {
	Algorithm string `json:"algorithm"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	// Iterations is PBKDF2's iteration count (pbkdf2-sha256 only).
	Iterations uint32 `json:"iterations,omitempty"`
	Salt       []byte `json:"salt"`
}

// The Argon2id parameters of new passphrase slots: 6 passes over 48 MiB on
// 4 lanes. Against RFC 9106's second recommended setting (3 passes over
// 64 MiB) a guess costs an attacker more in either model of its cost:
// memory bandwidth, memory times passes (288 MiB-passes against 192), and
// chip area times time, memory squared times passes (13,824 against
// 12,288). It costs the owner about 1.4x the CPU per unlock (0.16 s against
// 0.11 s on the 2-core machine of docs/benchmarks.md) and 16 MiB less
// peak memory in every command unlocked with a passphrase, which in a
// short command is most of its peak.
const (
	defaultArgon2Time      = 6
	defaultArgon2MemoryKiB = 48 << 10
	defaultArgon2Threads   = 4

	// DefaultKDFCost is the Cost of a default passphrase slot.
	DefaultKDFCost = defaultArgon2Time * defaultArgon2MemoryKiB
)

// DefaultKDFParams returns the parameters for new key slots: Argon2id with
// the default passes, memory and lanes above, and a fresh random salt.
// Deriving a key takes a few tenths of a second on purpose: that is what
// each passphrase guess costs an attacker.
func DefaultKDFParams() (KDFParams, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return KDFParams{}, fmt.Errorf("generating KDF salt: %w", err)
	}
	return KDFParams{Algorithm: KDFArgon2id, Time: defaultArgon2Time, MemoryKiB: defaultArgon2MemoryKiB, Threads: defaultArgon2Threads, Salt: salt}, nil
}

// DefaultPBKDF2Params returns the parameters for new passphrase slots of
// FIPS repositories: PBKDF2-HMAC-SHA-256 with 4,000,000 iterations and a
// fresh random 32-byte salt, about half a second per attempt.
func DefaultPBKDF2Params() (KDFParams, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return KDFParams{}, fmt.Errorf("generating KDF salt: %w", err)
	}
	return KDFParams{Algorithm: KDFPBKDF2, Iterations: defaultPBKDF2Iterations, Salt: salt}, nil
}

// FastPBKDF2ParamsForTests returns PBKDF2 parameters with the fewest
// iterations a slot may have (1000). Use them only in tests.
func FastPBKDF2ParamsForTests() KDFParams {
	salt := make([]byte, saltSize)
	rand.Read(salt)
	return KDFParams{Algorithm: KDFPBKDF2, Iterations: minPBKDF2Iterations, Salt: salt}
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
// costs 1; PBKDF2 costs one per pbkdf2PerCost iterations, rounded up.
func (p *KDFParams) Cost() uint64 {
	switch p.Algorithm {
	case KDFKeyFile:
		return 1
	case KDFPBKDF2:
		return max(1, (uint64(p.Iterations)+pbkdf2PerCost-1)/pbkdf2PerCost)
	}
	return max(1, uint64(p.Time)*uint64(p.MemoryKiB))
}

// Validate rejects parameters that are unknown or absurd, before any
// expensive work is done.
func (p *KDFParams) Validate() error { return p.validate() }

func (p *KDFParams) validate() error {
	if p.Algorithm == KDFPBKDF2 {
		switch {
		case p.Time != 0 || p.MemoryKiB != 0 || p.Threads != 0:
			return fmt.Errorf("%s takes no time, memory or threads parameters", KDFPBKDF2)
		case p.Iterations < minPBKDF2Iterations || p.Iterations > maxPBKDF2Iterations:
			return fmt.Errorf("%s iterations %d out of range: want %d to %d", KDFPBKDF2, p.Iterations, minPBKDF2Iterations, maxPBKDF2Iterations)
		case len(p.Salt) < minSaltSize || len(p.Salt) > maxSaltSize:
			return fmt.Errorf("%s salt is %d bytes: want %d to %d", KDFPBKDF2, len(p.Salt), minSaltSize, maxSaltSize)
		}
		return nil
	}
	if p.Iterations != 0 {
		return fmt.Errorf("%s takes no iterations parameter", p.Algorithm)
	}
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
		return fmt.Errorf("unknown key derivation algorithm %q (this nestguard supports %q, %q and %q)", p.Algorithm, KDFArgon2id, KDFPBKDF2, KDFKeyFile)
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

// checkApproved refuses, when the process runs with GODEBUG=fips140=only,
// a KDF that is not FIPS 140-3 approved, before any work is done.
func (p *KDFParams) checkApproved() error {
	if p.Algorithm == KDFArgon2id && fips140.Enforced() {
		return fmt.Errorf("%s is %w (GODEBUG=fips140=only): a FIPS repository's passphrase slots use %s", KDFArgon2id, ErrNotApproved, KDFPBKDF2)
	}
	return nil
}

// deriveKEK derives the key-encryption key from passphrase. p must be valid.
func (p *KDFParams) deriveKEK(passphrase []byte) ([]byte, error) {
	switch p.Algorithm {
	case KDFKeyFile:
		return hkdf.Key(sha256.New, passphrase, p.Salt, "nestguard key file v1", keySize)
	case KDFPBKDF2:
		return pbkdf2.Key(sha256.New, string(passphrase), p.Salt, int(p.Iterations), keySize)
	}
	if err := p.checkApproved(); err != nil {
		return nil, err
	}
	undo := func() {}
	if p.Threads > 1 {
		undo = prefault(int(p.MemoryKiB) << 10)
	}
	k := argon2.IDKey(passphrase, p.Salt, p.Time, p.MemoryKiB, p.Threads, keySize)
	// Argon2id's memory is garbage now. Returned to the system at once, it
	// does not stay in the RSS of a backup under what the work needs; and
	// the heap that reuses its range gets small pages again.
	debug.FreeOSMemory()
	undo()
	return k, nil
}

// prefault maps n bytes of heap from one thread and frees them again, so
// Argon2id's lanes reuse memory that is already mapped. When the lanes
// take their first-touch page faults in parallel instead, unlocking takes
// twice as long on a virtual machine (0.20 s against 0.10 s with 64 MiB on
// two cores, nearly all of it in the kernel). The memory is advised for
// huge pages first (hugemem.Advise): 32 faults of 2 MiB instead of 16,384
// of 4 KiB, each of which cost 14-22 µs on the machines measured. The
// result is the same; only the faults move.
// It returns the function that undoes the advice, once Argon2id is done.
func prefault(n int) (undo func()) {
	b := make([]byte, n+64<<10) // the lanes' blocks plus Argon2's slack
	undo = hugemem.Advise(b)
	touch(b)
	runtime.GC() // free it now, before argon2 asks for it
	return undo
}

//go:noinline
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
}
