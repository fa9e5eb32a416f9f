package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// usageError marks a mistake in how nestguard was called (exit code 2).
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

// requireSubcommands makes the root and every command group (a command
// that only holds others) refuse to run without one of its commands: an
// unknown command is a usage error with suggestions, and so is the group
// alone, since it does nothing (cobra would print the help and exit 0, so
// that 'nestguard key rotate' looked like a success to a script). --help
// still prints the help and exits 0.
func requireSubcommands(c *cobra.Command) {
	c.SuggestFor = append(c.SuggestFor, suggestFor[c.CommandPath()]...)
	if c.HasSubCommands() && !c.Runnable() {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[groupAnnotation] = "true"
		c.SuggestionsMinimumDistance = 2
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return &usageError{fmt.Errorf("'%s' needs a command: %s", cmd.CommandPath(), strings.Join(commandList(cmd), ", "))}
		}
		c.RunE = func(*cobra.Command, []string) error { return nil } // never reached: Args refuses
		if !c.HasParent() {
			// A group runs now, but only to refuse: its help shows no
			// usage line of its own, as before.
			t := c.UsageTemplate()
			c.SetUsageTemplate(strings.Replace(t, "Usage:{{if .Runnable}}", "Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
		}
	}
	for _, sub := range c.Commands() {
		requireSubcommands(sub)
	}
}

// groupAnnotation marks a command that only holds others.
const groupAnnotation = "nestguard-group"

// strictHelp makes help for a command that does not exist a usage error,
// as running it is: cobra would print the group's help and exit 0 for
// 'nestguard find --help' and 'nestguard help find', so that a script
// could not tell a typo from the help it asked for. It returns the error
// such a help request left, for after root ran.
func strictHelp(root *cobra.Command) func() error {
	var helpErr error
	show := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		// Flags are parsed by now: what is left names no command.
		if cmd.Annotations[groupAnnotation] != "" && cmd.Flags().NArg() > 0 {
			helpErr = unknownCommand(cmd, cmd.Flags().Arg(0))
			return
		}
		show(cmd, args)
	})
	for _, c := range root.Commands() {
		if c.Name() != "help" {
			continue
		}
		c.Run = nil
		c.RunE = func(_ *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil {
				return &usageError{err}
			}
			if cmd.Annotations[groupAnnotation] != "" && len(rest) > 0 {
				return unknownCommand(cmd, rest[0])
			}
			return cmd.Help()
		}
	}
	return func() error { return helpErr }
}

// commandList names c's commands that help lists.
func commandList(c *cobra.Command) []string {
	var names []string
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	return names
}

// suggestFor lists, by command, other names it is suggested for: what
// restic, Borg, pgBackRest and WAL-G call it, and common synonyms.
var suggestFor = map[string][]string{
	"nestguard verify":         {"check"},
	"nestguard snapshots":      {"list", "info", "backup-list"},
	"nestguard backup":         {"create"},
	"nestguard restore":        {"extract"},
	"nestguard init":           {"stanza-create"},
	"nestguard key add":        {"new", "create", "passwd"},
	"nestguard key list":       {"ls"},
	"nestguard key remove":     {"rm", "delete", "del", "revoke"},
	"nestguard hold add":       {"place", "set", "put", "create"},
	"nestguard hold release":   {"remove", "rm", "delete", "lift"},
	"nestguard hold list":      {"ls"},
	"nestguard pg archive-wal": {"archive-push", "wal-push"},
	"nestguard pg restore-wal": {"archive-get", "wal-fetch"},
	"nestguard pg status":      {"info"},
	"nestguard pg backup":      {"backup-push"},
	"nestguard pg restore":     {"backup-fetch"},
}

// otherTools maps, at the top level, other tools' command names to the
// nestguard commands below a group that do the same.
var otherTools = map[string][]string{
	"archive-push": {"pg archive-wal"},
	"wal-push":     {"pg archive-wal"},
	"archive-get":  {"pg restore-wal"},
	"wal-fetch":    {"pg restore-wal"},
	"backup-push":  {"pg backup"},
	"backup-fetch": {"pg restore"},
	"info":         {"pg status"},
	"status":       {"pg status"},
}

// suggestions returns full command paths that name may have meant, below c.
func suggestions(c *cobra.Command, name string) []string {
	var out []string
	for _, s := range c.SuggestionsFor(name) {
		out = append(out, c.CommandPath()+" "+s)
	}
	if !c.HasParent() {
		for _, s := range otherTools[strings.ToLower(name)] {
			out = append(out, c.CommandPath()+" "+s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// unknownCommand is the usage error for a command c does not have.
func unknownCommand(c *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, c.CommandPath())
	if s := suggestions(c, name); len(s) > 0 {
		msg += "; did you mean '" + strings.Join(s, "' or '") + "'?"
	} else {
		msg += "; its commands are " + strings.Join(commandList(c), ", ")
	}
	return &usageError{errors.New(msg)}
}

// printUsageHint follows a usage error: how to call cmd, an example, and
// where the help is.
func printUsageHint(w io.Writer, cmd *cobra.Command) {
	if cmd == nil {
		return
	}
	if !cmd.HasSubCommands() {
		fmt.Fprintf(w, "usage: %s\n", cmd.UseLine())
		if ex := firstExample(cmd.Example); ex != "" {
			fmt.Fprintf(w, "example: %s\n", ex)
		}
	}
	fmt.Fprintf(w, "see '%s --help'\n", cmd.CommandPath())
}

// flagAliases keeps old spellings of cmd's flags working, hidden from its
// help and usable in the config file too: aliases maps each old name to
// the flag's name now.
func flagAliases(cmd *cobra.Command, aliases map[string]string) {
	cmd.SetGlobalNormalizationFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if now, ok := aliases[name]; ok {
			name = now
		}
		return pflag.NormalizedName(name)
	})
}

// firstExample returns the first line of examples that runs nestguard,
// trimmed: not a comment ("# postgresql.conf") or another setting
// ("archive_mode = on"); else the first line that is not blank or a
// comment.
func firstExample(examples string) string {
	first := ""
	for line := range strings.Lines(examples) {
		l := strings.TrimSpace(line)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.Contains(l, "nestguard ") {
			return l
		}
		if first == "" {
			first = l
		}
	}
	return first
}
