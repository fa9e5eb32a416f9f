package main

import "golang.org/x/sys/unix"

// hardenProcess keeps the keys in this process's memory out of core dumps
// and away from other processes of the same user: no core file is
// written (RLIMIT_CORE 0, and PR_SET_DUMPABLE 0 also covers core_pattern
// pipes, which ignore the limit), and /proc/PID/mem and ptrace need
// CAP_SYS_PTRACE. The process still reaches its own /proc/self/fd, so
// --password-file /dev/stdin and <(pass show ...) keep working. Failures
// are ignored: they cost protection in depth, not correctness.
func hardenProcess() {
	unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
