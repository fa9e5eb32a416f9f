package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/pgtest"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

func TestParseBackupLabel(t *testing.T) {
	label := "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n" +
		"CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n" +
		"START TIME: 2024-05-01 12:00:00 UTC\nLABEL: nestguard\nSTART TIMELINE: 3\n"
	lsn, tli, err := parseBackupLabel(label)
	if err != nil || lsn != 0x2000028 || tli != 3 {
		t.Fatalf("parseBackupLabel = %s, %d, %v", lsn, tli, err)
	}
	for _, bad := range []string{
		"",
		"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n", // no timeline
		"START TIMELINE: 1\n", // no location
		"START WAL LOCATION: zz (file x)\nSTART TIMELINE: 1\n",
		"START WAL LOCATION: 0/1\nSTART TIMELINE: 0\n",
	} {
		if _, _, err := parseBackupLabel(bad); err == nil {
			t.Errorf("parseBackupLabel(%q) accepted", bad)
		}
	}
}

func FuzzParseBackupLabel(f *testing.F) {
	f.Add("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n")
	f.Add("START TIMELINE: 99999999999\n")
	f.Fuzz(func(t *testing.T, s string) {
		if _, tli, err := parseBackupLabel(s); err == nil && tli == 0 {
			t.Fatal("accepted timeline 0")
		}
	})
}

func TestLastNeededByte(t *testing.T) {
	seg := int64(16 << 20)
	start := LSN(0x2000028)
	// A stop exactly at a segment boundary needs nothing of the next segment.
	if got := pgmeta.SegmentOf(lastNeededByte(0x3000000, start), 1, seg); got != "000000010000000000000002" {
		t.Errorf("stop at boundary: last segment %s", got)
	}
	if got := pgmeta.SegmentOf(lastNeededByte(0x3000100, start), 1, seg); got != "000000010000000000000003" {
		t.Errorf("stop inside segment 3: last segment %s", got)
	}
	if got := lastNeededByte(start, start); got != start {
		t.Errorf("stop == start: %s", got)
	}
}

// testRepo is an in-memory repository with fast key derivation.
func testRepo(t testing.TB) *repository.Repository {
	t.Helper()
	kdf := crypto.FastKDFParamsForTests()
	r, err := repository.Init(context.Background(), mem.New(), []byte("test"), repository.InitOptions{
		Options: repository.Options{KDF: &kdf}, PackSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// archivedCluster is a cluster that archives WAL with cp into Archive,
// and a goroutine that stores what lands there in Repo as WAL objects, as
// archive-wal would.
type archivedCluster struct {
	*pgtest.Cluster
	Repo    *repository.Repository
	Archive string
	// also, if set, receives the WAL too (benchmarks swap repositories).
	also atomic.Pointer[repository.Repository]
}

func startArchived(t testing.TB, o pgtest.Options) *archivedCluster {
	t.Helper()
	repo := testRepo(t)
	dir := filepath.Join(pgtest.TempDir(t), "archive")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, dir)
	o.ArchiveCommand = fmt.Sprintf("test ! -f %s/%%f && cp %%p %s/%%f.tmp && mv %s/%%f.tmp %s/%%f", dir, dir, dir, dir)
	ac := &archivedCluster{Cluster: pgtest.Start(t, o), Repo: repo, Archive: dir}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		stored := map[string]bool{}
		for ctx.Err() == nil {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if stored[e.Name()] || strings.HasSuffix(e.Name(), ".tmp") {
					continue
				}
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					continue
				}
				for _, r := range []*repository.Repository{repo, ac.also.Load()} {
					if r == nil {
						continue
					}
					if err := r.SaveNamed(ctx, backend.WALFile, e.Name(), b); err != nil && !errors.Is(err, repository.ErrNamedExists) {
						t.Errorf("storing %s: %v", e.Name(), err)
					}
				}
				stored[e.Name()] = true
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ac
}

// waitStored switches WAL and waits until the segment closed is in the
// repository.
func (c *archivedCluster) waitStored(t testing.TB) string {
	t.Helper()
	seg := c.SwitchWAL(t)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Repo.Backend().Stat(context.Background(), backend.Handle{Type: backend.WALFile, Name: seg}); err == nil {
			return seg
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("WAL segment %s did not reach the repository\n%s", seg, c.LogTail())
	return ""
}

// treeFiles lists every path of a snapshot tree.
func treeFiles(t *testing.T, repo *repository.Repository, root id.ID) map[string]*tree.Node {
	t.Helper()
	out := make(map[string]*tree.Node)
	err := tree.Walk(context.Background(), repo, root, func(p string, n *tree.Node) error {
		out[strings.TrimPrefix(p, "/")] = n
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLiveCluster runs the base backup and restore scenarios against one
// real cluster (with data checksums, a tablespace and an unlogged table),
// so that the package's tests start PostgreSQL only once.
func TestLiveCluster(t *testing.T) {
	pgtest.Require(t)
	c := startArchived(t, pgtest.Options{Checksums: true})
	tsDir := filepath.Join(pgtest.TempDir(t), "table space")
	if err := os.Mkdir(tsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, tsDir)
	c.Exec(t, fmt.Sprintf("CREATE TABLESPACE ts1 LOCATION '%s'", tsDir))
	c.Exec(t, "CREATE TABLE moved (id int, v text) TABLESPACE ts1")
	c.Exec(t, "INSERT INTO moved SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
	c.Exec(t, "CREATE UNLOGGED TABLE scratch (id int)")
	c.Exec(t, "INSERT INTO scratch SELECT generate_series(1, 10000)")
	c.Exec(t, "CREATE TABLE ledger (id bigserial, v text)")

	var first *snapshot.Snapshot
	t.Run("backups", func(t *testing.T) { first = testBackups(t, c, tsDir) })
	t.Run("commit step", func(t *testing.T) { testCommitStep(t, c) })
	t.Run("wrong data directory", func(t *testing.T) { testWrongDataDir(t, c) })
	t.Run("WAL timeout", func(t *testing.T) { testWALTimeout(t, c) })
	t.Run("session lost", func(t *testing.T) { testSessionLost(t, c) })
	if first != nil {
		t.Run("restore", func(t *testing.T) { testRestore(t, c) })
		t.Run("standby", func(t *testing.T) { testStandby(t, c) })
	}
}

func testBackups(t *testing.T, c *archivedCluster, tsDir string) *snapshot.Snapshot {
	repo := c.Repo
	scratch := c.QueryString(t, "SELECT pg_relation_filepath('scratch')")
	moved := c.QueryString(t, "SELECT pg_relation_filepath('moved')")
	tsOID := c.QueryString(t, "SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")

	// Writes go on during the backup.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	conn := c.Conn(t)
	wg.Go(func() {
		for ctx.Err() == nil {
			conn.Exec(ctx, "INSERT INTO ledger (v) SELECT repeat('y', 100) FROM generate_series(1, 100)")
		}
	})
	sn, info, err := Backup(context.Background(), repo, BackupOptions{DataDir: c.DataDir, DSN: c.DSN(), WALTimeout: time.Minute})
	stop()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	if sn.Kind != snapshot.KindPostgres || len(sn.Paths) != 1 || sn.Paths[0] != c.DataDir {
		t.Errorf("snapshot kind %s paths %v", sn.Kind, sn.Paths)
	}
	got, err := pgmeta.Info(sn)
	if err != nil || got.StopLSN != info.StopLSN {
		t.Fatalf("Info: %+v, %v", got, err)
	}
	if info.StopLSN <= info.StartLSN || info.Timeline != 1 || !info.DataChecksums || info.BlockSize != DefaultBlockSize {
		t.Errorf("backup info: %+v", info)
	}
	if !strings.Contains(info.BackupLabel, "START WAL LOCATION: "+info.StartLSN.String()) || !strings.Contains(info.BackupLabel, info.StartWAL) {
		t.Errorf("backup_label does not match start %s (%s):\n%s", info.StartLSN, info.StartWAL, info.BackupLabel)
	}
	tsmap, err := ParseTablespaceMap(info.TablespaceMap)
	if err != nil || tsmap[uint32(atoi(t, tsOID))] != tsDir {
		t.Errorf("tablespace_map %q: %v, %v", info.TablespaceMap, tsmap, err)
	}
	if len(info.Tablespaces) != 1 || info.Tablespaces[0].Location != tsDir {
		t.Errorf("tablespaces %+v", info.Tablespaces)
	}
	if len(info.CorruptPages) > 0 {
		t.Errorf("corrupt pages in a healthy cluster: %+v", info.CorruptPages)
	}
	if sn.Summary.ChangedWhileRead != 0 {
		t.Errorf("%d files counted as changed while read: a base backup expects writes", sn.Summary.ChangedWhileRead)
	}
	segs, _ := pgmeta.SegmentsBetween(info.StartWAL, info.StopWAL, info.WALSegmentSize)
	for _, s := range segs {
		if _, err := repo.Backend().Stat(context.Background(), backend.Handle{Type: backend.WALFile, Name: s}); err != nil {
			t.Errorf("snapshot saved before WAL %s was stored: %v", s, err)
		}
	}
	ctl, err := repo.LoadBlob(context.Background(), info.PGControl, nil)
	if err != nil || len(ctl) != PageSize {
		t.Errorf("pg_control blob: %d bytes, %v", len(ctl), err)
	}

	files := treeFiles(t, repo, sn.Tree)
	for _, p := range []string{"PG_VERSION", "postgresql.conf", "base", "pg_wal", "pg_wal/archive_status", "pg_xact",
		"pg_tblspc/" + tsOID, moved, scratch + "_init"} {
		if files[p] == nil {
			t.Errorf("backup lacks %s", p)
		}
	}
	if n := files["pg_tblspc/"+tsOID]; n != nil && n.Type != tree.Dir {
		t.Errorf("tablespace stored as %s, want a directory", n.Type)
	}
	for _, p := range []string{"postmaster.pid", "postmaster.opts", "global/pg_control", scratch, scratch + "_fsm"} {
		if files[p] != nil {
			t.Errorf("backup holds %s", p)
		}
	}
	for p := range files {
		if strings.HasPrefix(p, "pg_wal/0") {
			t.Errorf("backup holds WAL file %s", p)
		}
	}
	if n := files[moved]; n == nil || n.Size < 4<<20 || len(n.Content) < int(n.Size/DefaultBlockSize) {
		t.Errorf("tablespace relation %s not stored in %d KiB blocks", moved, DefaultBlockSize>>10)
	}

	// Later backups are incremental: unchanged files are not read, and of
	// changed relation files only the changed blocks are stored. (The
	// freeze sets hint bits on every page first: that is a real change.)
	c.Exec(t, "VACUUM FREEZE")
	c.Exec(t, "CHECKPOINT")
	sn2, info2, err := Backup(context.Background(), repo, BackupOptions{DataDir: c.DataDir, DSN: c.DSN(), WALTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if sn2.Parent == nil || *sn2.Parent != sn.ID {
		t.Errorf("second backup's parent %v, want %s", sn2.Parent, sn.ID.Short())
	}
	if info2.StartLSN <= info.StopLSN {
		t.Errorf("second backup starts at %s, before the first stopped (%s)", info2.StartLSN, info.StopLSN)
	}
	c.Exec(t, "UPDATE moved SET v = 'changed' WHERE id = 1")
	c.Exec(t, "CHECKPOINT")
	sn3, info3, err := Backup(context.Background(), repo, BackupOptions{DataDir: c.DataDir, DSN: c.DSN(), WALTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if s := sn3.Summary; s.FilesUnmodified == 0 || s.DataAdded > info3.DatabaseSize/10 {
		t.Errorf("third backup: %d files unmodified, %d of %d bytes added", s.FilesUnmodified, s.DataAdded, info3.DatabaseSize)
	}
	t.Logf("backups of %d bytes: read %d, %d, %d; added %d, %d, %d", info3.DatabaseSize, sn.Summary.BytesRead, sn2.Summary.BytesRead,
		sn3.Summary.BytesRead, sn.Summary.DataAdded, sn2.Summary.DataAdded, sn3.Summary.DataAdded)
	return sn
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A backup whose session dies mid-copy fails clearly and saves nothing:
// the server aborted the backup, so the copy is worthless.
func testSessionLost(t *testing.T, c *archivedCluster) {
	repo := testRepo(t)
	killer := c.Conn(t)
	_, _, err := Backup(context.Background(), repo, BackupOptions{DataDir: c.DataDir, DSN: c.DSN(), sessionCheck: 20 * time.Millisecond,
		OnArchiver: func(*archiver.Archiver) {
			_, err := killer.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", ApplicationName)
			if err != nil {
				t.Error(err)
			}
		}})
	if err == nil || !strings.Contains(err.Error(), "session holding the backup open was lost") {
		t.Fatalf("backup with a terminated session: %v", err)
	}
	if !strings.Contains(err.Error(), "no snapshot saved") {
		t.Errorf("error does not say no snapshot was saved: %v", err)
	}
	list, _, _ := snapshot.List(context.Background(), repo)
	if len(list) != 0 {
		t.Errorf("%d snapshots saved by a failed backup", len(list))
	}
}

// When the WAL does not reach the repository (here: it is archived into
// another one) the backup waits --wal-timeout, then fails naming the
// missing segments.
func testWALTimeout(t *testing.T, c *archivedCluster) {
	repo := testRepo(t)
	_, _, err := Backup(context.Background(), repo, BackupOptions{DataDir: c.DataDir, DSN: c.DSN(), WALTimeout: time.Second})
	// Depending on timing, PostgreSQL's own wait for its archiver or the
	// wait for the repository runs out first: both name the WAL.
	if err == nil || !strings.Contains(err.Error(), "no snapshot saved") || !strings.Contains(err.Error(), "archive_command") ||
		!strings.Contains(err.Error(), "000000010000000") {
		t.Fatalf("backup without archived WAL: %v", err)
	}
	list, _, _ := snapshot.List(context.Background(), repo)
	if len(list) != 0 {
		t.Errorf("%d snapshots saved by a failed backup", len(list))
	}
}

func testWrongDataDir(t *testing.T, c *archivedCluster) {
	repo := testRepo(t)
	other := t.TempDir()
	os.MkdirAll(filepath.Join(other, "global"), 0o700)
	os.WriteFile(filepath.Join(other, "global", "pg_control"), make([]byte, PageSize), 0o600)
	_, _, err := Backup(context.Background(), repo, BackupOptions{DataDir: other, DSN: c.DSN()})
	if err == nil || !strings.Contains(err.Error(), "belongs to cluster 0") {
		t.Errorf("backup of another cluster's directory: %v", err)
	}
	_, _, err = Backup(context.Background(), repo, BackupOptions{DataDir: t.TempDir(), DSN: c.DSN()})
	if err == nil || !strings.Contains(err.Error(), "not a readable PostgreSQL data directory") {
		t.Errorf("backup of an empty directory: %v", err)
	}
	if _, _, err := Backup(context.Background(), repo, BackupOptions{DataDir: c.DataDir, DSN: c.DSN(), BlockSize: 12 << 10}); err == nil {
		t.Error("block size 12 KiB accepted")
	}

	// A copy of the data directory (same cluster, same timeline) taken
	// earlier is refused by path, and, where the server's path is not
	// visible, by its checkpoint being older than the backup's start.
	stale := filepath.Join(pgtest.TempDir(t), "stale")
	if out, err := exec.Command("cp", "-a", c.DataDir, stale).CombinedOutput(); err != nil {
		t.Fatalf("copying the data directory: %v\n%s", err, out)
	}
	c.Exec(t, "INSERT INTO ledger (v) SELECT 'after the copy' FROM generate_series(1, 100)")
	_, _, err = Backup(context.Background(), repo, BackupOptions{DataDir: stale, DSN: c.DSN()})
	if err == nil || !strings.Contains(err.Error(), "is not the data directory of the server") ||
		!strings.Contains(err.Error(), stale) || !strings.Contains(err.Error(), c.DataDir) {
		t.Errorf("backup of a stale copy: %v", err)
	}
	if list, _, _ := snapshot.List(context.Background(), repo); len(list) != 0 {
		t.Errorf("%d snapshots saved by refused backups", len(list))
	}
	ctx := context.Background()
	sess, err := Connect(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(ctx)
	started, err := sess.Start(ctx, "stale copy check")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkLive(stale, sess.Server, started.LSN); err == nil || !strings.Contains(err.Error(), "stale copy") {
		t.Errorf("checkLive of a stale copy: %v", err)
	}
	if err := checkLive(c.DataDir, sess.Server, started.LSN); err != nil {
		t.Errorf("checkLive of the server's data directory: %v", err)
	}
	// The server's directory through a symlink is the server's directory.
	link := filepath.Join(pgtest.TempDir(t), "link")
	if err := os.Symlink(c.DataDir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := checkDataDir(link, sess.Server); err != nil {
		t.Errorf("the data directory through a symlink: %v", err)
	}
}

// The next backup reads again every file the parent saw modified from a
// second before its copy began (the archiver's RereadSince), and every
// file when the parent did not record when its copy began.
func TestFromParent(t *testing.T) {
	copyStart := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	parent := func(copyStart time.Time) *snapshot.Snapshot {
		extra, err := json.Marshal(&BackupInfo{CopyStart: copyStart})
		if err != nil {
			t.Fatal(err)
		}
		return &snapshot.Snapshot{Kind: snapshot.KindPostgres, Tree: id.Hash([]byte("root")), Extra: extra}
	}
	tid, since := fromParent(parent(copyStart))
	if tid == nil || *tid != id.Hash([]byte("root")) || !since.Equal(copyStart.Add(-mtimeMargin)) {
		t.Errorf("fromParent = %v, %v; want the parent's tree and %v", tid, since, copyStart.Add(-mtimeMargin))
	}
	// A parent without a copy start: every file is read again.
	if tid, since = fromParent(parent(time.Time{})); tid == nil || since.IsZero() || !since.Before(time.Unix(0, 0)) {
		t.Errorf("fromParent without a copy start = %v, %v; want the tree and a time before any file's", tid, since)
	}
	if tid, since = fromParent(nil); tid != nil || !since.IsZero() {
		t.Errorf("fromParent(nil) = %v, %v", tid, since)
	}
}
