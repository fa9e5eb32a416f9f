package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/pgtest"
	"github.com/nestguard/nestguard/internal/repository"
)

// TestVerifyPGBaseBackupNeeds: verify checked only a snapshot's file tree.
// A base backup also needs its pg_control blob (stored outside the tree)
// and every WAL segment from its start to its stop; verify must name
// either when it is gone and exit 1.
func TestVerifyPGBaseBackupNeeds(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	c := p.c
	c.Exec(t, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10000) g")
	b := p.backup(t, c)
	p.must("verify", "--read-data")
	segs := []string{b.Backup.StartWAL}
	if b.Backup.StopWAL != b.Backup.StartWAL {
		segs = append(segs, b.Backup.StopWAL)
	}

	// One WAL segment of the span, gone.
	seg := filepath.Join(p.repo, "wal", segs[len(segs)-1])
	aside := filepath.Join(p.dir, "aside")
	if err := os.Rename(seg, aside); err != nil {
		t.Fatal(err)
	}
	r := p.run("verify")
	if r.code != 1 || !strings.Contains(r.stderr, filepath.Base(seg)) || !strings.Contains(r.stderr, b.Snapshot[:8]) {
		t.Errorf("verify without WAL segment %s of the base backup: exit %d\n%s", filepath.Base(seg), r.code, r.stderr)
	}
	if err := os.Rename(aside, seg); err != nil {
		t.Fatal(err)
	}
	p.must("verify", "--read-data")

	// The pack holding the pg_control blob, gone.
	ctx := context.Background()
	be, err := local.Open(p.repo)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(ctx, be, []byte(p.pass), repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	e, ok := repo.Index().Lookup(b.Backup.PGControl)
	be.Close()
	if !ok {
		t.Fatalf("pg_control blob %s is not indexed", b.Backup.PGControl.Short())
	}
	pack := e.Pack.String()
	if err := os.Remove(filepath.Join(p.repo, "data", pack[:2], pack)); err != nil {
		t.Fatal(err)
	}
	r = p.run("verify")
	if r.code != 1 || !strings.Contains(r.stderr, "pg_control") || !strings.Contains(r.stderr, "damaged snapshot "+b.Snapshot[:8]) {
		t.Errorf("verify without the pg_control blob's pack: exit %d\n%s", r.code, r.stderr)
	}
}
