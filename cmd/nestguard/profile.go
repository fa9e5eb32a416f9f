package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/nestguard/nestguard/internal/startup"
)

// startProfiles starts the CPU profile asked for with --cpu-profile; the
// heap profile (--mem-profile) is written by stopProfiles. They exist so
// that performance work starts from a profile, on the user's data too.
func (a *app) startProfiles() error {
	a.stopProfile = func() {}
	if a.memProfile != "" {
		runtime.MemProfileRate = startup.MemProfileRate // off since startup's init
	}
	if a.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(a.cpuProfile)
	if err != nil {
		return fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpu-profile: %w", err)
	}
	a.stopProfile = func() {
		pprof.StopCPUProfile()
		f.Close()
	}
	return nil
}

func (a *app) stopProfiles() {
	if a.stopProfile != nil {
		a.stopProfile()
	}
	if a.memProfile == "" {
		return
	}
	f, err := os.Create(a.memProfile)
	if err != nil {
		a.log.Error("--mem-profile", "err", err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		a.log.Error("--mem-profile", "err", err)
	}
}
