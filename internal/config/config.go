// Package config reads nestguard's configuration file.
//
// The file is TOML whose keys are the long names of command-line flags, so
// that nothing new has to be learnt: top-level keys set global flags, and a
// table names a command whose flags it sets ([backup], or [pg.backup] for
// `nestguard pg backup`). Arrays give a repeatable flag several values.
//
//	repo          = "s3://ledger-backups/prod"
//	password-file = "/etc/nestguard/pass"
//
//	[backup]
//	exclude = ["*.tmp", "/srv/app/cache"]
//	tag     = ["nightly"]
//
// This package only parses and checks the form; which keys exist is the
// command line's business (see cmd/nestguard).
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Setting is one key of the file with its values in flag syntax.
type Setting struct {
	// Section is the command path of the table the key is in ("pg",
	// "backup"); empty for the top level.
	Section []string
	Key     string
	// Values holds one value, or one per element of an array, spelled as
	// on the command line (booleans "true"/"false", numbers in decimal).
	Values []string
}

// Where names the setting for error messages: "[pg.backup] pgdata".
func (s Setting) Where() string {
	if len(s.Section) == 0 {
		return s.Key
	}
	return "[" + strings.Join(s.Section, ".") + "] " + s.Key
}

// File is a parsed configuration file.
type File struct {
	Path     string
	Settings []Setting // in the order of the file
}

// maxSize bounds what Load reads: a configuration is a few lines.
const maxSize = 1 << 20

// secretKeys may not appear anywhere: a configuration file is read by
// every operator and often kept in version control.
var secretKeys = map[string]bool{"password": true, "passphrase": true, "secret": true, "key": true}

// Load reads and parses the file at path. A file that others may write is
// refused: it chooses the repository and the keys to open it with.
func Load(path string) (*File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("config file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("config file %s is writable by others (mode %04o): run 'chmod go-w %s'", path, fi.Mode().Perm(), path)
	}
	if fi.Size() > maxSize {
		return nil, fmt.Errorf("config file %s is %d bytes, more than a configuration needs (at most %d)", path, fi.Size(), maxSize)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrPermission) {
		// Not a mistake in the file: the user running nestguard (the
		// database's, for archive_command) may not read it.
		return nil, fmt.Errorf("config file: %w: make it readable by this user (it holds no secrets: 'chmod a+r %s'), or name another with --config or NESTGUARD_CONFIG", err, path)
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return Parse(path, data)
}

// IsPermission reports whether err is Load's for a file this user may not
// read: not a mistake in how nestguard was called.
func IsPermission(err error) bool { return errors.Is(err, fs.ErrPermission) }

// Parse parses the content of a configuration file; name is used in errors.
func Parse(name string, data []byte) (*File, error) {
	var doc map[string]any
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config file %s: line %d: %s", name, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("config file %s: %w", name, err)
	}
	f := &File{Path: name}
	// md.Keys lists every key and table in file order; doc holds values.
	for _, k := range md.Keys() {
		path := []string(k)
		v, ok := lookup(doc, path)
		if !ok {
			continue
		}
		if _, isTable := v.(map[string]any); isTable {
			continue // its keys come next in md.Keys
		}
		s := Setting{Section: path[:len(path)-1], Key: path[len(path)-1]}
		if secretKeys[strings.ToLower(s.Key)] {
			return nil, fmt.Errorf("config file %s: %s: secrets are not read from the config file: use password-file or key-file (or NESTGUARD_PASSWORD)", name, s.Where())
		}
		if s.Values, err = values(v); err != nil {
			return nil, fmt.Errorf("config file %s: %s: %w", name, s.Where(), err)
		}
		f.Settings = append(f.Settings, s)
	}
	return f, nil
}

func lookup(doc map[string]any, path []string) (any, bool) {
	var cur any = doc
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// values spells a TOML value as flag arguments.
func values(v any) ([]string, error) {
	if arr, ok := v.([]any); ok {
		out := make([]string, 0, len(arr))
		for _, e := range arr {
			s, err := scalar(e)
			if err != nil {
				return nil, fmt.Errorf("array element: %w", err)
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := scalar(v)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("a %T is not a flag value: use a string, number, boolean or an array of them", v)
}

// Section returns the settings of the table at path (nil: the top level).
func (f *File) Section(path ...string) []Setting {
	var out []Setting
	for _, s := range f.Settings {
		if slices.Equal(s.Section, path) {
			out = append(out, s)
		}
	}
	return out
}

// IsNotExist reports whether err from Load means there is no file.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
