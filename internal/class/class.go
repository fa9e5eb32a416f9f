// Package class reads the data classes of the configuration file. A data
// class names a kind of data with the rules it lives by: a floor (the
// shortest time any snapshot of the class is kept, which nothing can
// undercut) and a retention policy (what forget keeps when no --keep-*
// rule is given). A backup records its class in the snapshot with the end
// of the floor then (snapshot.Snapshot.Class, KeepUntil).
//
// In the file, each class is a table under "class":
//
//	[class.financial-records]
//	floor        = "7y"
//	keep-daily   = 35
//	keep-monthly = 84
//
//	[class.logs]
//	floor = "90d"
//	rpo   = "1h"
//	rto   = "4h"
//
// floor and the keep-within* rules are calendar durations
// (policy.ParseDuration: "7y", "90d", "1y6m"); keep-last, keep-hourly,
// keep-daily, keep-weekly, keep-monthly and keep-yearly are counts (-1:
// unlimited); keep-tag is a tag list "a,b" or an array of them, as forget
// --keep-tag takes it. rpo and rto are elapsed times ("15m", "24h",
// "2d"): the recovery point and recovery time objectives a compliance
// report checks the class's backups and restore tests against.
package class

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/config"
	"github.com/nestguard/nestguard/internal/policy"
)

// Section is the table of the configuration file that holds the classes.
const Section = "class"

// Class is one data class.
type Class struct {
	Name string
	// Floor is the shortest time a snapshot of the class is kept, from
	// its time; zero for none.
	Floor policy.Duration
	// Policy is what forget applies to the class's snapshots when no
	// --keep-* rule is given; empty for none (forget then keeps them).
	Policy policy.Policy
	// RPO is the longest a snapshot of each of the class's assets may
	// be older than the data it protects: the longest gap allowed
	// between two backups; zero for none.
	RPO time.Duration
	// RTO is the longest a restore of the class's data may take; zero
	// for none.
	RTO time.Duration

	// zeroRules are the keep-* settings given as 0 (or 0d): a policy of
	// only such rules is refused, not taken for none.
	zeroRules []string
}

// KeepUntil is when a snapshot of c taken at t stops being protected by
// c's floor: t itself when c has none.
func (c *Class) KeepUntil(t time.Time) time.Time {
	return c.Floor.After(t)
}

// Set is the classes of a configuration, by name.
type Set map[string]*Class

// validName reports whether a class may be called name: it is stored in
// snapshots and typed on command lines. 1 to 64 lower-case letters,
// digits, '.', '_' and '-', starting with a letter or digit. (Written out:
// the regular expression of it cost every command, archive-wal too, a
// millisecond at start-up to compile.)
func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Lookup returns the class name, or an error naming the classes there are.
func (s Set) Lookup(name, file string) (*Class, error) {
	if c := s[name]; c != nil {
		return c, nil
	}
	if len(s) == 0 {
		where := "the configuration file"
		if file != "" {
			where = "the configuration file " + file
		}
		return nil, fmt.Errorf("unknown data class %q: %s defines no classes (add a [class.%s] table with its floor, see docs/retention.md)", name, where, name)
	}
	return nil, fmt.Errorf("unknown data class %q: the configuration defines %s", name, strings.Join(s.Names(), ", "))
}

// Names returns the classes' names, sorted.
func (s Set) Names() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Load reads the classes of f (nil: none). Every key of a class table is
// checked: a misspelt rule is an error, not a rule silently missing.
func Load(f *config.File) (Set, error) {
	set := Set{}
	if f == nil {
		return set, nil
	}
	for _, s := range f.Settings {
		if len(s.Section) == 0 || s.Section[0] != Section {
			continue
		}
		if len(s.Section) != 2 {
			return nil, fmt.Errorf("config file %s: %s: a data class is a table [class.NAME] holding floor and keep-* settings", f.Path, s.Where())
		}
		name := s.Section[1]
		if !validName(name) {
			return nil, fmt.Errorf("config file %s: [class.%s]: invalid class name: use lower-case letters, digits, '.', '_' and '-' (at most 64)", f.Path, name)
		}
		c := set[name]
		if c == nil {
			c = &Class{Name: name}
			set[name] = c
		}
		if err := c.set(s.Key, s.Values); err != nil {
			return nil, fmt.Errorf("config file %s: %s: %w", f.Path, s.Where(), err)
		}
	}
	for _, c := range set {
		if c.Policy.Empty() {
			if len(c.zeroRules) > 0 {
				return nil, fmt.Errorf("config file %s: [class.%s]: %s = 0 keeps no snapshot, so the class would have no policy: give a count of at least 1 (-1: every bucket) or a duration above 0, or leave the keep-* settings out", f.Path, c.Name, strings.Join(c.zeroRules, " = 0, "))
			}
			continue
		}
		if err := c.Policy.Validate(); err != nil {
			return nil, fmt.Errorf("config file %s: [class.%s]: %w", f.Path, c.Name, err)
		}
	}
	return set, nil
}

// set applies one key of c's table.
func (c *Class) set(key string, values []string) error {
	if key == "keep-tag" {
		for _, v := range values {
			g, err := TagGroup(v)
			if err != nil {
				return err
			}
			c.Policy.KeepTags = append(c.Policy.KeepTags, g)
		}
		return nil
	}
	if len(values) != 1 {
		return fmt.Errorf("takes one value, not %d", len(values))
	}
	v := values[0]
	if key == "rpo" || key == "rto" {
		d, err := ParseObjective(v)
		if err != nil {
			return err
		}
		if key == "rpo" {
			c.RPO = d
		} else {
			c.RTO = d
		}
		return nil
	}
	if d := c.durationField(key); d != nil {
		p, err := policy.ParseDuration(v)
		if err != nil {
			return err
		}
		if key == "floor" && p.Zero() {
			return fmt.Errorf("floor = %s keeps nothing: give how long every snapshot of the class is kept (7y, 90d), or leave floor out", v)
		}
		*d = p
		if p.Zero() {
			c.zeroRules = append(c.zeroRules, key)
		}
		return nil
	}
	if n := c.countField(key); n != nil {
		i, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a count (a whole number, -1 for unlimited), not %q", v)
		}
		*n = i
		if i == 0 {
			c.zeroRules = append(c.zeroRules, key)
		}
		return nil
	}
	return fmt.Errorf("unknown class setting %q: a class takes floor, rpo, rto, keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly, keep-within, keep-within-hourly, keep-within-daily, keep-within-weekly, keep-within-monthly, keep-within-yearly and keep-tag", key)
}

func (c *Class) durationField(key string) *policy.Duration {
	p := &c.Policy
	return map[string]*policy.Duration{
		"floor":               &c.Floor,
		"keep-within":         &p.KeepWithin,
		"keep-within-hourly":  &p.KeepWithinHourly,
		"keep-within-daily":   &p.KeepWithinDaily,
		"keep-within-weekly":  &p.KeepWithinWeekly,
		"keep-within-monthly": &p.KeepWithinMonthly,
		"keep-within-yearly":  &p.KeepWithinYearly,
	}[key]
}

func (c *Class) countField(key string) *int {
	p := &c.Policy
	return map[string]*int{
		"keep-last":    &p.KeepLast,
		"keep-hourly":  &p.KeepHourly,
		"keep-daily":   &p.KeepDaily,
		"keep-weekly":  &p.KeepWeekly,
		"keep-monthly": &p.KeepMonthly,
		"keep-yearly":  &p.KeepYearly,
	}[key]
}

// TagGroup parses a --keep-tag value: tags separated by commas, all of
// which a snapshot must have.
func TagGroup(s string) ([]string, error) {
	var g []string
	for t := range strings.SplitSeq(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			return nil, fmt.Errorf("keep-tag %q has an empty tag (want tags separated by commas)", s)
		}
		g = append(g, t)
	}
	return g, nil
}

// ParseObjective parses an RPO or RTO: a positive elapsed time as Go
// writes it ("15m", "24h", "1h30m") or a number of days ("2d", 24 hours
// each).
func ParseObjective(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid objective %q: want a positive time such as 15m, 24h, 1h30m or 2d", s)
	}
	return d, nil
}
