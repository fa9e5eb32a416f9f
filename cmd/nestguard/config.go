package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nestguard/nestguard/internal/class"
	"github.com/nestguard/nestguard/internal/config"
)

// defaultConfig is read when it exists and neither --config nor
// NESTGUARD_CONFIG names another file.
const defaultConfig = "/etc/nestguard/nestguard.toml"

// envAnnotation marks a flag whose default comes from an environment
// variable: the variable, once set, wins over the config file.
const envAnnotation = "nestguard-env"

// configAnnotation marks a flag set from the config file (not given on
// the command line): its value is the file's path.
const configAnnotation = "nestguard-config"

// setByConfig reports whether fl was set from the config file rather
// than given on the command line.
func setByConfig(fl *pflag.Flag) bool {
	_, ok := fl.Annotations[configAnnotation]
	return ok
}

// flagOrigin names where fl got its value, for messages: the config
// file ("s3-profile in /etc/nestguard/nestguard.toml"), the command line
// ("--s3-profile"), or its environment variable ("NESTGUARD_S3_PROFILE");
// "" for a nil flag.
func (a *app) flagOrigin(fl *pflag.Flag) string {
	switch {
	case fl == nil:
		return ""
	case setByConfig(fl):
		return fl.Name + " in " + fl.Annotations[configAnnotation][0]
	case fl.Changed:
		return "--" + fl.Name
	}
	for _, v := range fl.Annotations[envAnnotation] {
		if a.getenv(v) != "" {
			return v
		}
	}
	return "--" + fl.Name
}

// bindEnv records that flag name of fl defaults to the environment
// variables env (the first one set).
func bindEnv(fl *pflag.FlagSet, name string, env ...string) {
	if err := fl.SetAnnotation(name, envAnnotation, env); err != nil {
		panic(err) // a flag defined just before: a programming error
	}
}

// applyConfig sets the flags of cmd from the config file, except those
// given on the command line or by their environment variable: command
// line, then environment, then the file, then the built-in default. The
// whole file is checked against the commands first, so a misspelt key is
// an error even in a section this command does not read.
func (a *app) applyConfig(cmd *cobra.Command) error {
	a.origins = make(map[string]origin)
	cmd.Flags().Visit(func(fl *pflag.Flag) { a.origins[fl.Name] = fromCommandLine })
	path, explicit := a.configFile, a.configFile != ""
	if !explicit {
		path = defaultConfig
	}
	f, err := config.Load(path)
	if err != nil {
		if !explicit && config.IsNotExist(err) {
			return nil
		}
		if config.IsPermission(err) {
			if isRestoreWAL(cmd) {
				// Exit 1 would end PostgreSQL's recovery as at the
				// end of the archive (exit 200, as before).
				return &recoveryAbortError{err}
			}
			return err // the environment, not the command line (exit 1)
		}
		return &usageError{err}
	}
	if err := checkConfig(cmd.Root(), f); err != nil {
		return &usageError{err}
	}
	if a.classes, err = class.Load(f); err != nil {
		return &usageError{err}
	}
	a.classFile = f.Path
	names := commandNames(cmd)
	for i := 0; i <= len(names); i++ {
		for _, s := range f.Section(names[:i]...) {
			if err := a.applySetting(cmd.Flags(), f.Path, s); err != nil {
				return &usageError{err}
			}
		}
	}
	return nil
}

// commandNames returns the names from the root's child down to cmd:
// ["pg", "backup"] for 'nestguard pg backup'.
func commandNames(cmd *cobra.Command) []string {
	var names []string
	for c := cmd; c.HasParent(); c = c.Parent() {
		names = append([]string{c.Name()}, names...)
	}
	return names
}

func (a *app) applySetting(fl *pflag.FlagSet, path string, s config.Setting) error {
	flag := fl.Lookup(s.Key)
	if flag == nil || flag.Changed {
		return nil // a non-inherited flag of a parent command, or given on the command line
	}
	if a.firstEnv(flag.Annotations[envAnnotation]...) != "" {
		return nil
	}
	for _, v := range s.Values {
		if err := fl.Set(s.Key, v); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, s.Where(), err)
		}
	}
	a.origins[flag.Name] = fromConfigFile
	return fl.SetAnnotation(s.Key, configAnnotation, []string{path})
}

// origin is where a flag's value came from, in the order of precedence.
type origin int

const (
	fromCommandLine origin = iota
	fromEnvironment
	fromConfigFile
	unset
)

// originOf returns where the value v of flag name came from: unset when
// v is empty; from the environment when it was neither given on the
// command line nor set by the config file (its default is its variable).
func (a *app) originOf(name, v string) origin {
	if v == "" {
		return unset
	}
	if o, ok := a.origins[name]; ok {
		return o
	}
	return fromEnvironment
}

// keyFileFirst reports whether the key file keyFile (flag keyFlag) opens a
// repository rather than a passphrase: it is given, and no passphrase
// source of higher precedence is, the file passFile (flag passFlag) or the
// variable env. The order is every setting's (docs/configuration.md):
// the command line, then the environment, then the config file; from the
// same one, the key file wins.
func (a *app) keyFileFirst(keyFlag, keyFile, passFlag, passFile, env string) bool {
	k := a.originOf(keyFlag, keyFile)
	if k == unset {
		return false
	}
	p := a.originOf(passFlag, passFile)
	if a.getenv(env) != "" {
		p = min(p, fromEnvironment)
	}
	return k <= p
}

func repeatable(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Array") || strings.HasSuffix(t, "Slice")
}

// checkConfig reports the first setting that names no command or flag,
// or no valid data class setting ([class.NAME] tables, see
// internal/class).
func checkConfig(root *cobra.Command, f *config.File) error {
	if _, err := class.Load(f); err != nil {
		return err
	}
	for _, s := range f.Settings {
		if len(s.Section) > 0 && s.Section[0] == class.Section {
			continue // data classes: checked above
		}
		c := root
		for i, name := range s.Section {
			next := subcommand(c, name)
			if next == nil {
				return fmt.Errorf("config file %s: unknown section [%s]: there is no command 'nestguard %s'", f.Path,
					strings.Join(s.Section[:i+1], "."), strings.Join(s.Section[:i+1], " "))
			}
			c = next
		}
		where := "nestguard"
		if len(s.Section) > 0 {
			where = "nestguard " + strings.Join(s.Section, " ")
		}
		local := c.LocalFlags().Lookup(s.Key)
		switch {
		case s.Key == "config" || s.Key == "help":
			return fmt.Errorf("config file %s: %s cannot be set in the config file", f.Path, s.Where())
		case local != nil:
			if len(s.Values) != 1 && !repeatable(local) {
				return fmt.Errorf("config file %s: %s takes one value, not %d", f.Path, s.Where(), len(s.Values))
			}
		case c.InheritedFlags().Lookup(s.Key) != nil:
			return fmt.Errorf("config file %s: %s is a setting of a parent command: put it in that command's section (global ones at the top, before any [section])", f.Path, s.Where())
		default:
			return fmt.Errorf("config file %s: unknown setting %s: '%s' has no flag --%s (see '%s --help')", f.Path, s.Where(), where, s.Key, where)
		}
	}
	return nil
}

func subcommand(c *cobra.Command, name string) *cobra.Command {
	for _, sub := range c.Commands() {
		if sub.Name() == name || sub.HasAlias(name) {
			return sub
		}
	}
	return nil
}
