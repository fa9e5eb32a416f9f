package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/pgtest"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/retention"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// TestPGNeedsAgree: verify, copy and retention agree on what a PostgreSQL
// base backup needs (internal/needs). Each kind of object is taken away in
// turn: a pack holding a tree, a pack holding file data, the pack holding
// the pg_control blob, and one WAL segment of the backup's span. verify
// must name it and call the snapshot damaged, copy must refuse, and
// retention's object set must hold it. Then every pack and WAL segment of
// the repository is taken away in turn: verify calls the base backup
// damaged exactly when the object is in retention's set.
func TestPGNeedsAgree(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	// 24 MiB that do not compress: the base backup fills packs of file
	// data only before the last one, which holds the trees.
	c.Exec(t, "CREATE TABLE r (b bytea)")
	c.Exec(t, "ALTER TABLE r ALTER COLUMN b SET STORAGE EXTERNAL")
	c.Exec(t, "INSERT INTO r SELECT (SELECT decode(string_agg(md5(random()::text || i || g), ''), 'hex') FROM generate_series(1, 65536) g) FROM generate_series(1, 24) i")
	// A segment before the backup's span, which it does not need.
	c.Exec(t, "SELECT pg_switch_wal()")
	waitFor(t, "a WAL segment archived before the base backup", func() bool { return len(walObjects(t, p.repo)) > 0 })
	// A file snapshot, whose packs the base backup does not need.
	files := filepath.Join(p.dir, "files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		b := randomBytes(1<<20, 18, uint64(name[0]))
		if err := os.WriteFile(filepath.Join(files, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.must("backup", files)
	b := p.backup(t, c)
	p.must("verify", "--read-data")

	set, idx, sn := pgObjects(t, p, b.Snapshot)
	inSet := map[string]bool{}
	for _, pid := range set.Packs {
		inSet[packPath(pid)] = true
	}
	for _, w := range set.WAL {
		inSet["wal/"+w] = true
	}
	treePack, ok := idx.Lookup(sn.Tree)
	if !ok {
		t.Fatalf("root tree %s is not indexed", sn.Tree.Short())
	}
	ctlPack, ok := idx.Lookup(b.Backup.PGControl)
	if !ok {
		t.Fatalf("pg_control blob %s is not indexed", b.Backup.PGControl.Short())
	}
	// A pack of file data other than those two (it may hold trees of
	// directories finished early too).
	var dataPack id.ID
	for _, pid := range set.Packs {
		if pid != treePack.Pack && pid != ctlPack.Pack && packHolds(idx, pid, index.DataBlob) {
			dataPack = pid
			break
		}
	}
	if dataPack.IsNull() {
		t.Fatalf("no pack of the base backup holds file data apart from the root tree's and pg_control's: %d packs", len(set.Packs))
	}
	cases := []struct{ what, object string }{
		{"a pack holding a tree", packPath(treePack.Pack)},
		{"a pack holding file data", packPath(dataPack)},
		{"the pack holding pg_control", packPath(ctlPack.Pack)},
		{"a WAL segment of the span", "wal/" + b.Backup.StopWAL},
	}
	for _, cs := range cases {
		t.Run(cs.what, func(t *testing.T) {
			if !inSet[cs.object] {
				t.Errorf("retention does not protect %s", cs.object)
			}
			name := filepath.Base(cs.object)
			restore := takeAway(t, p.repo, cs.object)
			defer restore()
			r := p.run("verify")
			if r.code != 1 || !strings.Contains(r.stderr, name) || !strings.Contains(r.stderr, "damaged snapshot "+b.Snapshot[:8]) {
				t.Errorf("verify without %s: exit %d, want 1 naming it and the snapshot\n%s", cs.object, r.code, r.stderr)
			}
			to := newEnv(t)
			to.extraEnv = append(to.extraEnv, "NESTGUARD_FROM_PASSWORD="+p.pass)
			to.must("init")
			// A pack is named by its short id at least.
			want := name
			if strings.HasPrefix(cs.object, "data/") {
				want = name[:8]
			}
			if r := to.run("copy", "--from", p.repo, b.Snapshot); r.code != 1 || !strings.Contains(r.stderr, want) {
				t.Errorf("copy without %s: exit %d, want 1 naming it\n%s%s", cs.object, r.code, r.stdout, r.stderr)
			}
		})
	}

	// Exactly: the base backup is damaged without an object if and only
	// if retention protects it for the base backup.
	objects := append(packObjects(t, p.repo), walObjects(t, p.repo)...)
	for _, obj := range objects {
		if strings.HasPrefix(obj, "wal/") && !isSegment(filepath.Base(obj)) {
			continue // history files: kept with the segments, not required
		}
		restore := takeAway(t, p.repo, obj)
		damaged := verifyDamaged(t, p, b.Snapshot)
		restore()
		if damaged != inSet[obj] {
			t.Errorf("without %s: verify calls the base backup damaged: %v; retention protects it for the base backup: %v", obj, damaged, inSet[obj])
		}
	}
	for obj := range inSet {
		if !slices.Contains(objects, obj) {
			t.Errorf("retention protects %s, which is not stored", obj)
		}
	}
	if !slices.ContainsFunc(objects, func(o string) bool { return !inSet[o] && strings.HasPrefix(o, "wal/") }) ||
		!slices.ContainsFunc(objects, func(o string) bool { return !inSet[o] && strings.HasPrefix(o, "data/") }) {
		t.Errorf("the repository holds no WAL segment or no pack the base backup does not need: %v", objects)
	}

	// With everything back, copy succeeds.
	to := newEnv(t)
	to.extraEnv = append(to.extraEnv, "NESTGUARD_FROM_PASSWORD="+p.pass)
	to.must("init")
	to.must("copy", "--from", p.repo, b.Snapshot)
	to.must("verify")
}

// pgObjects returns retention's object set of snapshot ref, the index and
// the snapshot.
func pgObjects(t *testing.T, p *pitrEnv, ref string) (*retention.Set, *index.Map, *snapshot.Snapshot) {
	t.Helper()
	ctx := context.Background()
	be, err := local.Open(p.repo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	repo, err := repository.Open(ctx, be, []byte(p.pass), repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, _, err := snapshot.List(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(snaps, func(sn *snapshot.Snapshot) bool { return sn.ID.String() == ref })
	if i < 0 {
		t.Fatalf("snapshot %s not found", ref)
	}
	set, err := retention.Objects(ctx, repo, snaps[i])
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Missing) > 0 {
		t.Fatalf("retention finds objects missing: %v", set.Missing)
	}
	return set, repo.Index(), snaps[i]
}

func packPath(pid id.ID) string {
	s := pid.String()
	return "data/" + s[:2] + "/" + s
}

// packHolds reports whether pack pid holds a blob of type bt.
func packHolds(idx *index.Map, pid id.ID, bt index.BlobType) bool {
	found := false
	idx.Each(func(e index.Entry) bool {
		found = e.Pack == pid && e.Type == bt
		return !found
	})
	return found
}

func isSegment(name string) bool { return len(name) == 24 && pgmeta.IsWALFileName(name) }

// takeAway moves object rel of the repository aside and returns what puts
// it back.
func takeAway(t *testing.T, repo, rel string) func() {
	t.Helper()
	obj := filepath.Join(repo, rel)
	aside := filepath.Join(filepath.Dir(repo), "aside")
	if err := os.Rename(obj, aside); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Rename(aside, obj); err != nil {
			t.Fatal(err)
		}
	}
}

// verifyDamaged runs verify and reports whether it calls snapshot ref
// damaged.
func verifyDamaged(t *testing.T, p *pitrEnv, ref string) bool {
	t.Helper()
	r := p.run("verify", "--json")
	var out struct {
		Report struct {
			Damaged []struct {
				ID string `json:"id"`
			} `json:"damaged_snapshots"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("verify --json: exit %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return slices.ContainsFunc(out.Report.Damaged, func(d struct {
		ID string `json:"id"`
	}) bool {
		return d.ID == ref
	})
}

func packObjects(t *testing.T, repo string) []string {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(repo, "data", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i], _ = filepath.Rel(repo, m)
	}
	return out
}

func walObjects(t *testing.T, repo string) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(repo, "wal"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, "wal/"+e.Name())
		}
	}
	return out
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !ok(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
