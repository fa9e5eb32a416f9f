// Command nestguard backs up files and PostgreSQL into an encrypted,
// deduplicated, write-once repository and proves it can restore them.
//
// This package only parses flags and prints; the work is done in internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes scripts can rely on (README.md lists them).
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitPartial = 3 // the work was done, but some files were unreadable or damaged
)

// partialError marks an outcome that maps to exitPartial.
type partialError struct{ msg string }

func (e *partialError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	app := newApp()
	root := app.rootCommand()
	markUsageErrors(root)
	root.SetArgs(args)
	code := exitCode(root.ExecuteContext(ctx))
	app.writeMetrics(code)
	return code
}

// exitCode prints err and returns the exit code it maps to.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var pe *partialError
	if errors.As(err, &pe) {
		fmt.Fprintln(os.Stderr, "nestguard:", err)
		return exitPartial
	}
	var ue *usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(os.Stderr, "nestguard:", err)
		return exitUsage
	}
	fmt.Fprintln(os.Stderr, "nestguard:", err)
	return exitError
}

type usageError struct{ error }

func (e *usageError) Unwrap() error { return e.error }

// markUsageErrors makes every command's argument check fail with a
// usageError, so a wrong number of arguments exits 2 like a bad flag.
func markUsageErrors(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return &usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}
