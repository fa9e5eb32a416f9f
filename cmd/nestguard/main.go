// Command nestguard backs up files and PostgreSQL into an encrypted,
// deduplicated, write-once repository and proves it can restore them.
//
// This package only parses flags and prints; the work is done in internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	_ "time/tzdata" // forget --time-zone on a host without a zoneinfo database (a static binary in a minimal image)

	"github.com/spf13/cobra"

	// Before any package that reads crypto/rand in its init: see its doc.
	_ "github.com/nestguard/nestguard/internal/fipsinit"
	_ "github.com/nestguard/nestguard/internal/startup"

	"github.com/nestguard/nestguard/internal/backend"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes scripts can rely on (README.md lists them).
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitPartial = 3 // the work was done, but some files were unreadable or damaged
	// exitRetained: forget could not remove a snapshot named by ID, which
	// a class floor, a legal hold or Object Lock keeps.
	exitRetained = 4
	// exitRecoveryAbort: restore-wal could not deliver a WAL file the
	// repository may hold (damaged, unreadable, the repository out of
	// reach). PostgreSQL takes any exit status up to 125 for "not in the
	// archive", which ends archive recovery there and, with a target of
	// the latest WAL, promotes a server that lacks the rest; a status
	// over 125 makes it stop the recovery (FATAL) instead. Not 126 or
	// 127, which it reports as a command not executable or not found,
	// nor 128 + a signal's number, which it takes for that signal (143
	// for its own shutdown).
	exitRecoveryAbort = 200
	// A command stopped by a signal exits 128 + the signal's number, as a
	// shell reports a process the signal killed: 130 for SIGINT, 143 for
	// SIGTERM.
	exitSignal = 128
)

// isRestoreWAL reports whether cmd is pg restore-wal, PostgreSQL's
// restore_command.
func isRestoreWAL(cmd *cobra.Command) bool {
	return cmd != nil && cmd.Name() == "restore-wal" && cmd.HasParent() && cmd.Parent().Name() == "pg"
}

// partialError marks an outcome that maps to exitPartial.
type partialError struct{ msg string }

func (e *partialError) Error() string { return e.msg }

func main() {
	hardenProcess()
	ctx, stop := signalContext(context.Background())
	defer stop()
	os.Exit(run(ctx, processSystem(), os.Args[1:]))
}

// interrupted is the cause of a command's context being cancelled by a
// signal.
type interrupted struct{ sig syscall.Signal }

func (e *interrupted) Error() string {
	switch e.sig {
	case syscall.SIGINT:
		return "interrupted (SIGINT)"
	case syscall.SIGTERM:
		return "interrupted (SIGTERM)"
	}
	return "interrupted (" + e.sig.String() + ")"
}

// signalContext returns a context cancelled, with an *interrupted cause,
// by the first SIGINT or SIGTERM. A second one kills the process the
// default way, for a command that does not stop soon enough.
func signalContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			signal.Reset(os.Interrupt, syscall.SIGTERM)
			cancel(&interrupted{s.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(nil)
	}
}

// run runs the command args name, with what sys gives, and returns its
// exit code; main and the in-process tests call it.
func run(ctx context.Context, sys system, args []string) int {
	out := &outputWriter{w: sys.stdout}
	sys.stdout = out
	app := newApp(sys)
	app.args = args
	root := app.rootCommand()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	markUsageErrors(root)
	requireSubcommands(root)
	helpErr := strictHelp(root)
	root.SetArgs(args)
	root.SetIn(sys.stdin)
	root.SetOut(sys.stdout)
	root.SetErr(sys.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		err = helpErr()
	}
	if err == nil && out.failed() != nil {
		// Text output is printed without checking each write: a
		// command whose output was lost (stdout on a full disk) must
		// not exit 0, so that 'nestguard audit key > audit.pub' is not
		// believed with an empty file.
		err = fmt.Errorf("writing the output: %w (the command finished, but what it printed was lost: check the file or pipe stdout goes to)", out.failed())
	}
	err = app.finishAudit(ctx, err)
	code := app.exitCode(ctx, cmd, err)
	app.writeMetrics(code)
	return code
}

// exitCode prints err and returns the exit code it maps to. A usage error
// is followed by how to call cmd.
func (a *app) exitCode(ctx context.Context, cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}
	var in *interrupted
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &in) {
		// The command's own words when it says more than the cause.
		msg := err.Error()
		switch {
		case strings.Contains(msg, in.Error()):
		case errors.Is(err, context.Canceled):
			msg = in.Error()
		default:
			msg = in.Error() + ": " + msg
		}
		fmt.Fprintln(a.stderr, "nestguard:", msg)
		return exitSignal + int(in.sig)
	}
	var pe *partialError
	if errors.As(err, &pe) {
		fmt.Fprintln(a.stderr, "nestguard:", err)
		return exitPartial
	}
	var ra *recoveryAbortError
	if errors.As(err, &ra) {
		fmt.Fprintln(a.stderr, "nestguard:", err)
		fmt.Fprintln(a.stderr, "nestguard: exiting 200 so that PostgreSQL stops the recovery instead of ending it here with WAL missing; once the repository is readable (or the file restored into it), start the server again: recovery resumes")
		return exitRecoveryAbort
	}
	var re *retainedError
	if errors.As(err, &re) {
		fmt.Fprintln(a.stderr, "nestguard:", err)
		return exitRetained
	}
	var ue *usageError
	var le *backend.LocationError // a storage named wrongly (--s3-endpoint)
	if errors.As(err, &ue) || errors.As(err, &le) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(a.stderr, "nestguard:", err)
		printUsageHint(a.stderr, cmd)
		if isRestoreWAL(cmd) {
			// A restore_command that cannot run must not look like the
			// end of the archive to PostgreSQL (exit 2 would).
			fmt.Fprintln(a.stderr, "nestguard: exiting 200 so that PostgreSQL stops the recovery: fix restore_command and start the server again")
			return exitRecoveryAbort
		}
		return exitUsage
	}
	fmt.Fprintln(a.stderr, "nestguard:", err)
	return exitError
}

// outputWriter is stdout as commands see it: it remembers the first write
// error, which run turns into the exit code 1 of a command that
// otherwise succeeded.
type outputWriter struct {
	w   io.Writer
	mu  sync.Mutex
	err error
}

func (o *outputWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil {
		o.mu.Lock()
		if o.err == nil {
			o.err = err
		}
		o.mu.Unlock()
	}
	return n, err
}

// failed returns the first write error, nil when every write succeeded.
func (o *outputWriter) failed() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}
