package pgtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Run runs a PostgreSQL program (psql, pg_dump, pg_controldata, ...; a
// name without a slash is looked up in BinDir) as the server's user with
// PGHOST/PGPORT/PGUSER/PGDATABASE pointing at the cluster, fails the test
// on error and returns its standard output.
func (c *Cluster) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	if !strings.Contains(name, "/") {
		name = filepath.Join(c.BinDir, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	c.setup(cmd)
	return run(t, cmd)
}

// Pgbench runs pgbench against the cluster's postgres database, e.g.
// Pgbench(t, "-i", "-s", "1") or Pgbench(t, "-c", "4", "-T", "5").
func (c *Cluster) Pgbench(t testing.TB, args ...string) {
	t.Helper()
	c.Run(t, "pgbench", args...)
}

// SwitchWAL closes the current WAL segment (pg_switch_wal) and returns the
// name of the segment it closed, which PostgreSQL then archives. Write
// something first: with no WAL written since the last switch, no new
// segment is closed and the name is that of the previous one.
func (c *Cluster) SwitchWAL(t testing.TB) string {
	t.Helper()
	// pg_walfile_name maps an end-of-record position on a segment boundary
	// to the segment that ends there: the one just closed.
	return c.QueryString(t, "SELECT pg_walfile_name(pg_switch_wal())")
}

// WaitArchived waits until WAL file segment has been archived: its
// archive_status/.done marker exists, or pg_stat_archiver reports a
// later segment archived. On timeout the test fails with the archiver's
// failure statistics and the server log, where archive_command's errors go.
func (c *Cluster) WaitArchived(t testing.TB, segment string, timeout time.Duration) {
	t.Helper()
	done := filepath.Join(c.DataDir, "pg_wal", "archive_status", segment+".done")
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(done); err == nil {
			return
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("waiting for %s to be archived: %v", segment, err)
		}
		last := c.QueryString(t, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		// History and backup history files are archived too: only compare
		// with the segment part of names.
		if len(last) >= 24 && len(segment) >= 24 && last[:24] >= segment[:24] && !strings.HasSuffix(last, ".history") {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	stats := c.QueryString(t, `SELECT format('archived_count=%s last_archived_wal=%s failed_count=%s last_failed_wal=%s last_failed_time=%s',
		archived_count, last_archived_wal, failed_count, last_failed_wal, last_failed_time) FROM pg_stat_archiver`)
	t.Fatalf("WAL segment %s not archived within %v: %s\nserver log:\n%s", segment, timeout, stats, c.LogTail())
}
