package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/nestguard/nestguard/internal/commit"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// stampOptions are the flags of backup and pg backup that the commit step
// records in the snapshot: its data class (and so its floor) and, for
// file backups, its time (a hidden flag for tests, as restic's --time;
// not for pg backup, whose times the WAL window is computed from).
type stampOptions struct {
	class string
	time  string
}

func (s *stampOptions) addClassFlag(f *pflag.FlagSet) {
	f.StringVar(&s.class, "class", "", "record the snapshot under this data class of the config file: forget never removes it before the class's floor ends (see 'nestguard forget --help')")
}

func (s *stampOptions) addTimeFlag(f *pflag.FlagSet) {
	f.StringVar(&s.time, "time", "", "record this time as the snapshot's instead of now (RFC 3339, or \"2006-01-02 15:04:05\" in local time)")
	f.MarkHidden("time")
}

// stampCommit returns the commit options of a backup with s: the class,
// the end of its floor and the time recorded in every snapshot saved. An
// unknown class is a usage error, before anything is read or stored.
func (a *app) stampCommit(s stampOptions) (commit.Options, error) {
	o := a.commitOptions()
	var at time.Time
	if s.time != "" {
		t, err := parseTargetTime(s.time)
		if err != nil {
			return o, &usageError{fmt.Errorf("--time %q: want RFC 3339 (2024-05-01T13:59:00+02:00) or \"2024-05-01 13:59:00\" (local time)", s.time)}
		}
		at = t
	}
	if s.class == "" && at.IsZero() {
		return o, nil
	}
	var name string
	var keepUntil func(time.Time) time.Time
	if s.class != "" {
		c, err := a.classes.Lookup(s.class, a.classFile)
		if err != nil {
			return o, &usageError{fmt.Errorf("--class: %w", err)}
		}
		name, keepUntil = c.Name, c.KeepUntil
	}
	o.Stamp = func(sn *snapshot.Snapshot) {
		if !at.IsZero() {
			sn.Time = at
		}
		if keepUntil != nil {
			sn.Class, sn.KeepUntil = name, keepUntil(sn.Time).UTC()
		}
	}
	return o, nil
}
