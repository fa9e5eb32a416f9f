package pg

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/archiver"
)

// TestCopyWhileWritten: a base backup copies relation files that the
// server writes meanwhile, by design (WAL replay repairs them), so a file
// written while it is read is not counted or warned about as changed
// while read, as a file backup's is (archiver.Options.ExpectWrites). A
// relation file of a data directory without a server is rewritten at its
// start and near its end every millisecond during the copy, as F5's file
// was; the same directory backed up by a plain archiver meanwhile counts
// it, which shows the writes landed during the reads.
func TestCopyWhileWritten(t *testing.T) {
	dataDir := t.TempDir()
	rel := filepath.Join(dataDir, "base", "1", "16384")
	for _, d := range []string{"pg_tblspc", "global", "base/1"} {
		if err := os.MkdirAll(filepath.Join(dataDir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const size = 32 << 20
	if err := os.WriteFile(rel, bytes.Repeat([]byte{1}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, controlFile), make([]byte, PageSize), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Go(func() {
		f, err := os.OpenFile(rel, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			close(started)
			return
		}
		defer f.Close()
		page := bytes.Repeat([]byte{2}, PageSize)
		for i := 0; ctx.Err() == nil; i++ {
			for _, off := range []int64{0, size - 4<<20} {
				if _, err := f.WriteAt(page, off); err != nil {
					t.Error(err)
				}
			}
			if i == 0 {
				close(started)
			}
			time.Sleep(time.Millisecond)
		}
	})
	<-started
	defer wg.Wait()
	defer stop()

	// The control: a file backup of the same directory, meanwhile.
	repo := testRepo(t)
	a := archiver.New(repo, archiver.Options{Chunker: chunkerParams(repo), Seed: repo.Key().ChunkerSeed()})
	if _, err := a.SnapshotDir(context.Background(), dataDir); err != nil {
		t.Fatal(err)
	}
	if len(a.Changed()) == 0 {
		t.Fatal("a file backup did not see the relation file change while it was read: the test proves nothing")
	}

	var log bytes.Buffer
	var logMu sync.Mutex
	o := BackupOptions{Log: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &log}, nil))}
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	var ar *archiver.Archiver
	o.OnArchiver = func(a *archiver.Archiver) { ar = a }
	cp, err := copyCluster(context.Background(), repo, dataDir, 0, false, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if cp.summary.ChangedWhileRead != 0 || len(ar.Changed()) != 0 || strings.Contains(log.String(), "changed while it was read") {
		t.Errorf("base backup counted files written while read: %d, %v\n%s", cp.summary.ChangedWhileRead, ar.Changed(), log.String())
	}
	if cp.summary.Errors != 0 || cp.summary.FilesNew != 1 {
		t.Errorf("base backup summary %+v, want the relation file copied without errors", cp.summary)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
