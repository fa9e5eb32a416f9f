package repository

import (
	"fmt"
	"time"

	"github.com/nestguard/nestguard/internal/chunker"
	"github.com/nestguard/nestguard/internal/compress"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
)

// FormatVersion is the repository format this code writes and reads.
// Version 2 binds every sealed thing to what it is (associated data, see
// ad.go) and authenticates key slots' descriptions; version 1 was only
// written by development builds and is not read.
const FormatVersion = 2

// Config is the repository configuration, sealed under the master key and
// stored once as the "config" object at init. It names every algorithm so a
// later format can change them.
type Config struct {
	Version     int          `json:"version"`
	ID          string       `json:"id"`
	Created     time.Time    `json:"created"`
	Algorithms  Algorithms   `json:"algorithms"`
	Chunker     ChunkerSizes `json:"chunker"`
	Compression string       `json:"compression"` // off, fastest, default, better, best
	PackSize    int          `json:"pack_size"`   // target bytes per pack
	ObjectLock  *ObjectLock  `json:"object_lock,omitempty"`
}

// Algorithms records the primitives in use.
type Algorithms struct {
	Encryption  string `json:"encryption"`
	BlobID      string `json:"blob_id"`
	ObjectID    string `json:"object_id"`
	KDF         string `json:"kdf"`
	Chunker     string `json:"chunker"`
	Compression string `json:"compression"`
}

// ChunkerSizes are the content-defined chunking bounds in bytes.
type ChunkerSizes struct {
	Min int `json:"min"`
	Avg int `json:"avg"`
	Max int `json:"max"`
}

// ObjectLock is the WORM policy chosen at init for S3 Object Lock buckets.
type ObjectLock struct {
	Mode         string        `json:"mode"` // compliance or governance
	MinRetention time.Duration `json:"min_retention"`
}

func (c ChunkerSizes) params() chunker.Params {
	return chunker.Params{Min: c.Min, Avg: c.Avg, Max: c.Max}
}

func defaultAlgorithms() Algorithms {
	return Algorithms{
		Encryption:  crypto.SuiteXAES,
		BlobID:      crypto.BlobIDBLAKE3,
		ObjectID:    id.BLAKE3,
		KDF:         crypto.KDFArgon2id,
		Chunker:     "FastCDC-keyed-gear",
		Compression: "zstd",
	}
}

// fipsAlgorithms are the algorithms of a repository created with
// 'init --fips': every one is a FIPS 140-3 approved service of Go's
// cryptographic module (docs/security.md, "FIPS 140-3").
func fipsAlgorithms() Algorithms {
	a := defaultAlgorithms()
	a.Encryption = crypto.SuiteFIPS
	a.KDF = crypto.KDFPBKDF2
	a.BlobID = crypto.BlobIDHMACSHA256
	a.ObjectID = id.SHA256
	return a
}

// FIPS reports whether the algorithms are those of a FIPS repository.
func (a Algorithms) FIPS() bool { return a.Encryption == crypto.SuiteFIPS }

// validate refuses a config naming an algorithm this build does not
// implement: reading such a repository with the defaults would fail on
// every object, or worse, write blobs under IDs the next reader rejects.
// A config has the default algorithms or the FIPS ones, never a mix; the
// blob ID and the object ID are the ones with a choice (BLAKE3 by
// default, or HMAC-SHA-256 and SHA-256; only the SHA-256 ones for FIPS),
// and crypto.Key.BlobIDFunc and id.NewHasher check them.
func (a Algorithms) validate() error {
	want := defaultAlgorithms()
	if a.FIPS() {
		want = fipsAlgorithms()
		if a.BlobID != want.BlobID {
			return fmt.Errorf("blob id algorithm %q in a %s repository: only %s is FIPS 140-3 approved", a.BlobID, a.Encryption, want.BlobID)
		}
		if a.ObjectID != want.ObjectID {
			return fmt.Errorf("object id algorithm %q in a %s repository: only %s is FIPS 140-3 approved", a.ObjectID, a.Encryption, want.ObjectID)
		}
	}
	if _, err := id.NewHasher(a.ObjectID); err != nil {
		return err
	}
	for _, f := range []struct{ what, got, want string }{
		{"encryption", a.Encryption, want.Encryption},
		{"key derivation", a.KDF, want.KDF},
		{"chunker", a.Chunker, want.Chunker},
		{"compression", a.Compression, want.Compression},
	} {
		if f.got != f.want {
			return fmt.Errorf("%s algorithm %q is not one this nestguard knows (it uses %s): upgrade nestguard", f.what, f.got, f.want)
		}
	}
	return nil
}

// DefaultPackSize is the target size of a pack: large enough that object
// stores see few requests, small enough to buffer a few in memory.
const DefaultPackSize = 16 << 20

func (c *Config) validate() error {
	if c.Version != FormatVersion {
		return fmt.Errorf("repository format version %d is not supported by this nestguard (it reads version %d): upgrade nestguard", c.Version, FormatVersion)
	}
	if err := c.Algorithms.validate(); err != nil {
		return fmt.Errorf("repository config: %w", err)
	}
	if err := c.Chunker.params().Validate(); err != nil {
		return fmt.Errorf("repository config: chunker: %w", err)
	}
	if _, err := codecFor(c.Compression); err != nil {
		return fmt.Errorf("repository config: %w", err)
	}
	if c.PackSize < 1<<20 || c.PackSize > 1<<30 {
		return fmt.Errorf("repository config: pack size %d out of range", c.PackSize)
	}
	return nil
}

// codecFor returns the compressor for a config compression name; nil means off.
func codecFor(name string) (*compress.Codec, error) {
	switch name {
	case "off":
		return nil, nil
	case "fastest", "":
		return compress.NewCodec(compress.Fastest), nil
	case "default":
		return compress.NewCodec(compress.Default), nil
	case "better":
		return compress.NewCodec(compress.Better), nil
	case "best":
		return compress.NewCodec(compress.Best), nil
	}
	return nil, fmt.Errorf("unknown compression %q (want off, fastest, default, better or best)", name)
}
