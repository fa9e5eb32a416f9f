package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nestguard/nestguard/internal/snapshot"
)

// GroupBy says which snapshot fields divide snapshots into groups; the
// policy applies to each group on its own. The zero GroupBy puts every
// snapshot in one group. Class is not one of --group-by's fields: forget
// always sets it, so that no policy ever spans two data classes.
type GroupBy struct {
	Host, Tags, Paths, Class bool
}

// DefaultGroupBy is restic's default: by host and paths.
var DefaultGroupBy = GroupBy{Host: true, Paths: true}

// ParseGroupBy reads a comma-separated list of host, tags and paths (as
// --group-by takes it); "" is the zero GroupBy (one group).
func ParseGroupBy(s string) (GroupBy, error) {
	var g GroupBy
	if s == "" {
		return g, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		switch strings.TrimSpace(f) {
		case "host":
			g.Host = true
		case "tags":
			g.Tags = true
		case "paths":
			g.Paths = true
		default:
			return GroupBy{}, fmt.Errorf("invalid --group-by %q: unknown field %q (want host, tags and/or paths, comma-separated)", s, f)
		}
	}
	return g, nil
}

// GroupKey is what the snapshots of a group share: only the fields
// GroupBy names are set. Tags and Paths are sorted.
type GroupKey struct {
	Host  string   `json:"host,omitempty"`
	Tags  []string `json:"tags,omitempty"`
	Paths []string `json:"paths,omitempty"`
	// Class is the data class (snapshot.Snapshot.Class), "" for
	// snapshots without one.
	Class string `json:"class,omitempty"`
}

// String describes the key: "host db1, paths [/srv]"; "" for the single
// group of the zero GroupBy.
func (k GroupKey) String() string {
	var parts []string
	if k.Host != "" {
		parts = append(parts, "host "+k.Host)
	}
	if k.Tags != nil {
		parts = append(parts, "tags ["+strings.Join(k.Tags, ",")+"]")
	}
	if k.Paths != nil {
		parts = append(parts, "paths ["+strings.Join(k.Paths, ",")+"]")
	}
	if k.Class != "" {
		parts = append(parts, "class "+k.Class)
	}
	return strings.Join(parts, ", ")
}

// SnapshotGroup is one group of snapshots.
type SnapshotGroup struct {
	Key       GroupKey
	Snapshots []*snapshot.Snapshot
}

// Group divides snaps by g. Groups come sorted by key; snapshots keep
// their order within a group.
func Group(snaps []*snapshot.Snapshot, g GroupBy) []SnapshotGroup {
	index := make(map[string]int)
	var groups []SnapshotGroup
	for _, sn := range snaps {
		k := keyOf(sn, g)
		s := k.identity()
		i, ok := index[s]
		if !ok {
			i = len(groups)
			index[s] = i
			groups = append(groups, SnapshotGroup{Key: k})
		}
		groups[i].Snapshots = append(groups[i].Snapshots, sn)
	}
	slices.SortStableFunc(groups, func(a, b SnapshotGroup) int {
		return strings.Compare(a.Key.sortKey(), b.Key.sortKey())
	})
	return groups
}

// identity is the key as a string that only an equal key has: every
// field and list element quoted (a path may hold any byte but NUL, so no
// separator is safe alone), and the lists' lengths.
func (k GroupKey) identity() string {
	var b strings.Builder
	for _, l := range [][]string{{k.Host}, k.Tags, k.Paths, {k.Class}} {
		b.WriteString(strconv.Itoa(len(l)))
		for _, s := range l {
			b.WriteString(strconv.Quote(s))
		}
	}
	return b.String()
}

// sortKey joins the key's fields with NUL and its lists with SOH: it
// orders groups (ties, which only odd bytes in paths or tags make, keep
// the order of their first snapshots); identity tells them apart.
func (k GroupKey) sortKey() string {
	return k.Host + "\x00" + strings.Join(k.Tags, "\x01") + "\x00" + strings.Join(k.Paths, "\x01") + "\x00" + k.Class
}

func keyOf(sn *snapshot.Snapshot, g GroupBy) GroupKey {
	var k GroupKey
	if g.Host {
		k.Host = sn.Hostname
	}
	if g.Tags {
		k.Tags = sorted(sn.Tags)
	}
	if g.Paths {
		k.Paths = sorted(sn.Paths)
	}
	if g.Class {
		k.Class = sn.Class
	}
	return k
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	slices.Sort(out)
	return out
}
