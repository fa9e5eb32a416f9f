package main

import (
	"runtime"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/repository"
)

// blockingProcs raises GOMAXPROCS for a command whose work is reading
// many files not in the page cache, with blocking goroutines doing so at
// once: one P more for every two of them.
//
// A goroutine in a blocking system call, such as read(2) or open(2) of a
// file the kernel must fetch from disk, holds its P (one of GOMAXPROCS)
// until the runtime's monitor takes it back, which takes from 20 µs to 10
// ms. With GOMAXPROCS at the number of cores, the other goroutines wait
// for it, runnable with no P to run on, and fewer reads are in flight
// than the command started. Measured on the 2-core machine
// (docs/benchmarks.md, "A second machine"):
//   - backup of a million files of 100-400 bytes, cold: 62.7-65.8 s with
//     GOMAXPROCS 2, 43.5 s with 3;
//   - 'audit verify' of a million one-record entries, cold: 38.1 s with
//     GOMAXPROCS 2, 17.4-20.6 s with 10 (4.0-4.1 s against 3.7 s warm).
//
// The GOMAXPROCS environment variable, when set, is left as it is. The
// runtime's own default (cores, or a container's CPU limit) is the base,
// so that calling this again does not raise it further.
func blockingProcs(getenv func(string) string, blocking int) {
	if getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.SetDefaultGOMAXPROCS()
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + blocking/2)
}

// readerProcs prepares the process for a backup (blockingProcs for its
// readers) and returns how many goroutines should hash, compress and
// seal: one per core, as before, so that memory stays as it was.
func readerProcs(getenv func(string) string) int {
	blockingProcs(getenv, 0) // the default first: one worker per core
	workers := repository.Workers()
	blockingProcs(getenv, archiver.DefaultReaders)
	return workers
}
