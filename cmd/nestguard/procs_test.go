package main

import (
	"runtime"
	"testing"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/audit"
	"github.com/nestguard/nestguard/internal/repository"
)

// readerProcs and blockingProcs raise GOMAXPROCS above the runtime's default once, however
// often it is called, keeps the workers at one per core, and leaves a
// GOMAXPROCS set in the environment alone.
func TestReaderProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.SetDefaultGOMAXPROCS()
	def, workers := runtime.GOMAXPROCS(0), repository.Workers()
	unset := func(string) string { return "" }
	for i := range 3 {
		if w := readerProcs(unset); w != workers {
			t.Errorf("call %d: %d workers, want %d", i, w, workers)
		}
		if got, want := runtime.GOMAXPROCS(0), def+archiver.DefaultReaders/2; got != want {
			t.Errorf("call %d: GOMAXPROCS %d, want %d", i, got, want)
		}
	}
	blockingProcs(unset, audit.DefaultWorkers)
	if got, want := runtime.GOMAXPROCS(0), def+audit.DefaultWorkers/2; got != want {
		t.Errorf("blockingProcs: GOMAXPROCS %d, want %d", got, want)
	}
	runtime.GOMAXPROCS(1)
	readerProcs(func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	})
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS=1 in the environment: GOMAXPROCS %d", got)
	}
}
