package pg

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestRelationFile(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
		want relName
	}{
		{"base/16384/16397", true, relName{node: "16397"}},
		{"base/16384/16397.1", true, relName{node: "16397", segment: 1}},
		{"base/16384/16397_fsm", true, relName{node: "16397", fork: "fsm"}},
		{"base/16384/16397_vm.12", true, relName{node: "16397", fork: "vm", segment: 12}},
		{"base/1/2619_init", true, relName{node: "2619", fork: "init"}},
		{"global/1262", true, relName{node: "1262"}},
		{"pg_tblspc/16390/PG_15_202209061/16384/16400.3", true, relName{node: "16400", segment: 3}},
		{"global/pg_control", false, relName{}},
		{"global/pg_filenode.map", false, relName{}},
		{"base/16384/PG_VERSION", false, relName{}},
		{"base/16384/pg_internal.init", false, relName{}},
		{"base/16384/16397.0", false, relName{}}, // segment 0 has no suffix
		{"base/16384/16397.x", false, relName{}},
		{"base/16384/16397_main", false, relName{}},
		{"base/abc/16397", false, relName{}},
		{"base/16384/sub/16397", false, relName{}},
		{"pg_wal/000000010000000000000001", false, relName{}},
		{"pg_tblspc/16390/16384/16400", false, relName{}},
		{"16397", false, relName{}},
		{"base/16384/", false, relName{}},
		{"base/16384/99999999999", false, relName{}},
	} {
		got, ok := relationFile(tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("relationFile(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestExcludedPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		dir  bool
		want bool
	}{
		{"pg_wal", true, false},
		{"pg_wal/000000010000000000000001", false, true},
		{"pg_wal/archive_status", true, false},
		{"pg_wal/archive_status/000000010000000000000001.done", false, true},
		{"pg_wal/summaries", true, false},
		{"pg_wal/summaries/0000000100000000010000000000000001000000.summary", false, true},
		{"pg_wal/xlogtemp.123", false, true},
		{"pg_replslot/slot1", true, true},
		{"pg_stat_tmp/global.stat", false, true},
		{"pg_subtrans/0000", false, true},
		{"pg_notify", true, false},
		{"pg_xact/0000", false, false},
		{"pg_multixact/offsets/0000", false, false},
		{"postmaster.pid", false, true},
		{"postmaster.opts", false, true},
		{"backup_label", false, true},
		{"backup_label.old", false, true},
		{"tablespace_map", false, true},
		{"tablespace_map.old", false, true},
		{"base/1/backup_label", false, false}, // only at the top
		{"global/pg_control", false, true},
		{"log/nestguard-restore.log", false, true}, // an earlier restore's server log
		{"log/postgresql-2024-05-01.log", false, false},
		{"log", true, false},
		{"global/pg_internal.init", false, true},
		{"base/16384/pg_internal.init.123", false, true},
		{"base/pgsql_tmp", true, true},
		{"base/pgsql_tmp/pgsql_tmp123.0", false, true},
		{"pg_tblspc/16390/PG_15_202209061/pgsql_tmp", true, true},
		{"base/16384/t3_16400", false, true},
		{"base/16384/t3_16400_fsm", false, true},
		{"base/16384/t3_16400.1", false, true},
		{"base/16384/t3x_16400", false, false},
		{"t3_16400", false, false},
		{"base/16384/16400", false, false},
		{"postgresql.conf", false, false},
		{"postgresql.auto.conf", false, false},
		{"PG_VERSION", false, false},
		{"pg_tblspc", true, false},
	} {
		if got := excludedPath(tc.path, tc.dir); got != tc.want {
			t.Errorf("excludedPath(%q, dir=%v) = %v, want %v", tc.path, tc.dir, got, tc.want)
		}
	}
}

type fakeInfo struct {
	name string
	mode fs.FileMode
}

func (f fakeInfo) Name() string       { return f.name }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

// Unlogged relations keep only their init fork: the server rebuilds the
// rest from it after recovery.
func TestExcludeUnlogged(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "base", "16384")
	if err := os.MkdirAll(db, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"16500", "16500.1", "16500_fsm", "16500_vm", "16500_init", "16600", "16600_fsm"} {
		if err := os.WriteFile(filepath.Join(db, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ex := newExcluder()
	var kept []string
	entries, _ := os.ReadDir(db)
	for _, e := range entries {
		if !ex.exclude("base/16384/"+e.Name(), db, fakeInfo{e.Name(), 0o600}) {
			kept = append(kept, e.Name())
		}
	}
	want := []string{"16500_init", "16600", "16600_fsm"}
	if !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
	// A directory is never mistaken for an unlogged relation's file.
	if ex.exclude("base/16384/16500", db, fakeInfo{"16500", fs.ModeDir | 0o700}) {
		t.Error("excluded a directory named like an unlogged relation")
	}
}

func TestExcludedDirsAreCreatable(t *testing.T) {
	dirs := ExcludedDirs()
	for _, d := range []string{"pg_wal", "pg_wal/archive_status", "pg_replslot", "pg_tblspc", "pg_subtrans"} {
		if !slices.Contains(dirs, d) {
			t.Errorf("ExcludedDirs lacks %s", d)
		}
	}
	for _, d := range dirs {
		if excludedPath(d, true) {
			t.Errorf("%s is both recreated and excluded", d)
		}
	}
}

func FuzzRelationFile(f *testing.F) {
	for _, s := range []string{"base/1/2", "global/1262_vm.3", "pg_tblspc/1/PG_15_1/2/3_init", "base/1/t2_3", "", "/", "base//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, ok := relationFile(p)
		if ok && (r.node == "" || r.segment < 0) {
			t.Fatalf("relationFile(%q) = %+v", p, r)
		}
		excludedPath(p, false)
		excludedPath(p, true)
		isTempRelation(p)
	})
}
