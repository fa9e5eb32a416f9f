package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"

	"github.com/nestguard/nestguard/internal/startup"
)

// startProfiles starts the CPU profile asked for with --cpu-profile and
// the execution trace asked for with --trace; the heap profile
// (--mem-profile) is written by stopProfiles. They exist so that
// performance work starts from a profile, on the user's data too.
func (a *app) startProfiles() error {
	a.stopProfile = func() {}
	if a.memProfile != "" {
		runtime.MemProfileRate = startup.MemProfileRate // off since startup's init
	}
	var stops []func()
	a.stopProfile = func() {
		for _, stop := range stops {
			stop()
		}
	}
	if a.cpuProfile != "" {
		stop, err := startFile("--cpu-profile", a.cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
	}
	if a.traceFile != "" {
		stop, err := startFile("--trace", a.traceFile, trace.Start, trace.Stop)
		if err != nil {
			a.stopProfile()
			return err
		}
		stops = append(stops, stop)
	}
	return nil
}

// startFile creates name and starts writing a profile or trace to it;
// the function returned stops it and closes the file.
func startFile(flag, name string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return func() {
		stop()
		f.Close()
	}, nil
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
