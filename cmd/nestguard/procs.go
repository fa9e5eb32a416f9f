package main

import (
	"runtime"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/repository"
)

// readerProcs prepares the process for a backup and returns how many
// goroutines should hash, compress and seal: one per core, as before.
//
// A backup's readers spend most of their time in read(2) of files not in
// the page cache, and a goroutine in a blocking system call holds its P
// (one of GOMAXPROCS) until the runtime's monitor takes it back, which
// takes from 20 µs to 10 ms. With GOMAXPROCS at the number of cores, the
// walkers, the workers and the other readers waited for it: the tiny set
// (a million files of 100-400 bytes, cold) kept 0.9-1.2 of 2 cores busy
// and took 62-66 s; with GOMAXPROCS 3, 43.5 s, and the pgdata set 1.84-1.90
// s instead of 1.96-2.08 s (docs/benchmarks.md, "A second machine"). So a
// backup runs with one P more for every two readers. The GOMAXPROCS
// environment variable, when set, is left as it is; the runtime's own
// default (cores, or a container's CPU limit) is the base, so that calling
// this again does not raise it further.
func readerProcs(getenv func(string) string) int {
	if getenv("GOMAXPROCS") != "" {
		return repository.Workers()
	}
	runtime.SetDefaultGOMAXPROCS()
	workers := repository.Workers()
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + archiver.DefaultReaders/2)
	return workers
}
