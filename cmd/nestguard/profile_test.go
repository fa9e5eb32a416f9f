package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --cpu-profile and --trace (hidden, for performance work) write a CPU
// profile and an execution trace of one command, together; a file that
// cannot be created fails the command and names the flag.
func TestProfileFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.subprocess = true // a process of its own: the test binary may be profiled
	if r := e.run("init"); r.code != 0 {
		t.Fatalf("init: %d %s", r.code, r.stderr)
	}
	cpu, tr := filepath.Join(e.dir, "cpu.pprof"), filepath.Join(e.dir, "run.trace")
	if r := e.run("--cpu-profile", cpu, "--trace", tr, "snapshots"); r.code != 0 {
		t.Fatalf("snapshots: %d %s", r.code, r.stderr)
	}
	for _, p := range []string{cpu, tr} {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %d bytes, %v", p, len(b), err)
		}
	}
	if b, _ := os.ReadFile(tr); !strings.HasPrefix(string(b), "go 1.") {
		t.Errorf("trace starts %q, not as go tool trace reads", b[:min(len(b), 16)])
	}
	r := e.run("--trace", filepath.Join(e.dir, "missing", "t"), "snapshots")
	if r.code == 0 || !strings.Contains(r.stderr, "--trace") {
		t.Errorf("--trace into a missing directory: exit %d, %s", r.code, r.stderr)
	}
}
