package pg

import (
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// What a base backup leaves out, following PostgreSQL's "Backing up the
// data directory" and pg_basebackup: files the server recreates or that
// describe only the running instance. Paths are slash-separated and
// relative to the data directory.

// emptiedDirs keep their directory but none of their contents: the server
// needs the directories to exist and rebuilds what was in them.
var emptiedDirs = []string{
	"pg_wal",      // restored from the archive by restore_command
	"pg_replslot", // slots would hold WAL back on the restored cluster
	"pg_dynshmem",
	"pg_notify",
	"pg_serial",
	"pg_snapshots",
	"pg_stat_tmp",
	"pg_subtrans",
}

// topLevelFiles exist only while a server runs or belong to another backup.
var topLevelFiles = map[string]bool{
	"postmaster.pid":           true,
	"postmaster.opts":          true,
	"backup_label":             true, // the backup's own label is stored from pg_backup_stop
	"backup_label.old":         true,
	"tablespace_map":           true,
	"tablespace_map.old":       true,
	"backup_manifest":          true,
	"postgresql.auto.conf.tmp": true,
	"current_logfiles.tmp":     true,
}

// restoreLogs are server logs earlier versions of 'nestguard pg restore
// --start' wrote inside the data directory: they describe an earlier
// recovery, not the cluster, and would be mistaken for the next one's.
var restoreLogs = []string{"log/nestguard-restore.log"}

// controlFile is copied after everything else and stored apart from the
// tree (see basebackup.go).
const controlFile = "global/pg_control"

// excludedPath reports whether the entry at rel is left out of a base
// backup, judging by its path alone.
func excludedPath(rel string, dir bool) bool {
	if rel == controlFile || !dir && slices.Contains(restoreLogs, rel) {
		return true
	}
	top, rest, nested := strings.Cut(rel, "/")
	if !nested && topLevelFiles[top] && !dir {
		return true
	}
	if nested && slices.Contains(emptiedDirs, top) {
		// pg_wal/archive_status (and 17's pg_wal/summaries) are kept
		// empty, as pg_basebackup does.
		return !(top == "pg_wal" && (rest == "archive_status" || rest == "summaries") && dir)
	}
	name := path.Base(rel)
	if strings.HasPrefix(name, "pgsql_tmp") || strings.HasPrefix(name, "pg_internal.init") {
		return true
	}
	// Temporary tables' files live in database directories only.
	return !dir && isTempRelation(name) && (strings.HasPrefix(rel, "base/") || strings.HasPrefix(rel, "pg_tblspc/"))
}

// isTempRelation reports names of temporary tables' files: t<backend>_<relfilenode>[_fork][.seg].
func isTempRelation(name string) bool {
	rest, ok := strings.CutPrefix(name, "t")
	if !ok {
		return false
	}
	backend, rel, ok := strings.Cut(rest, "_")
	if !ok || !allDigits(backend) {
		return false
	}
	_, ok = parseRelName(rel)
	return ok
}

// relName is a parsed relation file name: <relfilenode>[_fork][.segment].
type relName struct {
	node    string
	fork    string // "", "fsm", "vm" or "init"
	segment int
}

func parseRelName(name string) (relName, bool) {
	var r relName
	base, seg, hasSeg := strings.Cut(name, ".")
	if hasSeg {
		n, err := strconv.Atoi(seg)
		if err != nil || !allDigits(seg) || n <= 0 {
			return r, false
		}
		r.segment = n
	}
	node, fork, hasFork := strings.Cut(base, "_")
	if hasFork {
		if fork != "fsm" && fork != "vm" && fork != "init" {
			return r, false
		}
		r.fork = fork
	}
	if !allDigits(node) {
		return r, false
	}
	r.node = node
	return r, true
}

func allDigits(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// relationFile parses rel if it names a relation data file: global/<rel>,
// base/<db>/<rel> or pg_tblspc/<oid>/<version dir>/<db>/<rel>.
func relationFile(rel string) (relName, bool) {
	parts := strings.Split(rel, "/")
	var ok bool
	switch {
	case len(parts) == 2 && parts[0] == "global":
		ok = true
	case len(parts) == 3 && parts[0] == "base":
		ok = allDigits(parts[1])
	case len(parts) == 5 && parts[0] == "pg_tblspc":
		ok = allDigits(parts[1]) && strings.HasPrefix(parts[2], "PG_") && allDigits(parts[3])
	}
	if !ok {
		return relName{}, false
	}
	return parseRelName(parts[len(parts)-1])
}

// excluder decides what a backup leaves out, including the files of
// unlogged relations except their init forks: the server resets unlogged
// relations from the init fork after recovery, so their contents would be
// thrown away anyway.
type excluder struct {
	mu       sync.Mutex
	unlogged map[string]map[string]bool // directory -> relfilenodes with an init fork
}

func newExcluder() *excluder { return &excluder{unlogged: map[string]map[string]bool{}} }

// exclude reports whether entry rel (relative to the data directory),
// which lives in directory absDir on disk, is left out.
func (e *excluder) exclude(rel, absDir string, fi fs.FileInfo) bool {
	if excludedPath(rel, fi.IsDir()) {
		return true
	}
	if !fi.Mode().IsRegular() || strings.HasPrefix(rel, "global/") {
		return false
	}
	r, ok := relationFile(rel)
	if !ok || r.fork == "init" {
		return false
	}
	return e.initForks(absDir)[r.node]
}

// initForks lists the relations of directory dir that have an init fork,
// reading each directory once.
func (e *excluder) initForks(dir string) map[string]bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if m, ok := e.unlogged[dir]; ok {
		return m
	}
	m := map[string]bool{}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, de := range entries {
			if r, ok := parseRelName(de.Name()); ok && r.fork == "init" && r.segment == 0 {
				m[r.node] = true
			}
		}
	}
	e.unlogged[dir] = m
	return m
}

// ExcludedDirs lists the directories a restore creates empty because the
// backup kept them without their contents.
func ExcludedDirs() []string {
	return append(slices.Clone(emptiedDirs), "pg_wal/archive_status", "pg_tblspc")
}
