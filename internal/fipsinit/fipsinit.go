// Package fipsinit makes a process under GODEBUG=fips140=only start fast.
//
// In FIPS 140-3 mode Go seeds its random bit generator from a CPU jitter
// entropy source that times atomic accesses to a 32 MiB scratch buffer in
// the binary's BSS. On a virtual machine whose page faults are dear, the
// first touch of that buffer, 8,192 faults of 4 KiB, took 0.3-0.4 s of
// system time and up to 1.5 s of wall time in every nestguard process, an
// archive_command call included. Asking for transparent huge pages on the
// BSS (madvise MADV_HUGEPAGE, which the kernel's default "madvise" mode
// honours) makes it 16 faults of 2 MiB: 0.16-0.24 s of wall time and 0.04 s
// of CPU measured, the source itself and its health tests unchanged.
//
// The package does its work in init, so it must be initialized before any
// package that reads crypto/rand in its own init: it imports only the
// standard library, and Go initializes, among packages whose dependencies
// are ready, the first by import path. No package of the binary reads
// crypto/rand in its init today (github.com/rs/xid did, pulled in by
// minio-go, the S3 client before aws-sdk-go-v2); one that sorts before
// github.com/nestguard (github.com/aws/... does) and starts to would seed
// the entropy source before this package has run.
package fipsinit

import "crypto/fips140"

func init() {
	if fips140.Enabled() {
		hugeBSS()
	}
}
