package main

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nestguard/nestguard/internal/miniotest"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/pgtest"
)

// TestPGExpiryS3: WAL expiry on MinIO as on a local directory (issue 19:
// "all of it runs the same on S3"): PostgreSQL archives into the bucket,
// a forget of the older base backup and a prune remove the WAL before the
// kept one's start and keep the rest, and the kept one restores to its
// end with exactly its rows.
func TestPGExpiryS3(t *testing.T) {
	t.Parallel()
	pgtest.Require(t)
	e, srv := s3TestEnv(t, miniotest.MinIO, "pgexpiry")
	e.must("init")
	e.cred = pgtest.Credential(t)
	pe := &pgEnv{env: e, passFile: filepath.Join(e.dir, "pass"), keyFile: filepath.Join(e.dir, "wal.key")}
	if err := os.WriteFile(pe.passFile, []byte(e.pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// archive_command runs as postgres, in the server's environment: a
	// script of the postgres user's own gives it the bucket's settings
	// (not on its command line), and a copy of MinIO's CA it can read.
	ca, err := os.ReadFile(srv.CACert)
	if err != nil {
		t.Fatal(err)
	}
	caCopy := filepath.Join(e.dir, "ca.pem")
	if err := os.WriteFile(caCopy, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, kv := range e.extraEnv {
		if strings.HasPrefix(kv, "NESTGUARD_CA_CERT=") {
			e.extraEnv[i] = "NESTGUARD_CA_CERT=" + caCopy
		}
	}
	var script strings.Builder
	script.WriteString("#!/bin/sh\n")
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if k == "NESTGUARD_CA_CERT" {
			v = caCopy
		}
		fmt.Fprintf(&script, "export %s='%s'\n", k, v)
	}
	// Not exec: under NESTGUARD_TEST_FIPS, ngShell starts with an
	// assignment (GODEBUG=...), which exec would take for the program.
	fmt.Fprintf(&script, "%s --repo %s --key-file %s pg archive-wal \"$1\"\n", ngShell(), e.repo, pe.keyFile)
	archive := filepath.Join(e.dir, "archive.sh")
	if err := os.WriteFile(archive, []byte(script.String()), 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, e.dir)
	e.must("key", "add", "--generate-key-file", pe.keyFile, "--label", "archive_command")
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: archive + " %p"})
	p := &pitrEnv{pgEnv: pe, c: c}

	c.Exec(t, "CREATE TABLE ledger (id bigint PRIMARY KEY)")
	var ids []int64
	insert := func(n int) {
		for range n {
			id := int64(len(ids) + 1)
			c.Exec(t, "INSERT INTO ledger VALUES ($1)", id)
			ids = append(ids, id)
		}
		c.Exec(t, "SELECT pg_switch_wal()")
	}
	insert(10)
	b1 := p.backup(t, c)
	insert(10)
	insert(10)
	b2 := p.backup(t, c)
	want := slices.Clone(ids)
	insert(5)

	cl := srv.Client(t)
	segments := func() []string {
		t.Helper()
		var out []string
		pg := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String("pgexpiry"), Prefix: aws.String("repo/wal/")})
		for pg.HasMorePages() {
			page, err := pg.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range page.Contents {
				if name := path.Base(*o.Key); pgmeta.IsSegment(name) {
					out = append(out, name)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	before := segments()
	p.must("forget", b1.Snapshot[:8])
	out := p.must("prune", "--grace", "0")
	after := segments()
	start := b2.Backup.StartWAL[8:]
	var removed int
	for _, s := range before {
		keep := s[8:] >= start
		if got := slices.Contains(after, s); got != keep {
			t.Errorf("WAL segment %s (kept base backup starts in %s): kept %v, want %v", s, b2.Backup.StartWAL, got, keep)
		}
		if !keep {
			removed++
		}
	}
	if removed == 0 {
		t.Fatalf("no WAL before %s to remove (%v): the test proves nothing\n%s", b2.Backup.StartWAL, before, out)
	}
	t.Logf("prune removed %d of %d WAL segments from the bucket", removed, len(before))
	p.must("verify")
	r := p.restore(t, "--snapshot", b2.Snapshot, "--to-lsn", b2.Backup.StopLSN.String())
	checkLedger(t, r, want, "the kept base backup restored to its end from S3")
	stopServer(t, c.BinDir, r.dir)
}
