package archiver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/repository"
)

// A backup cancelled while directory walkers are still listing returns the
// cancellation: the walkers must not send files to readers that are gone
// (this panicked with "send on closed channel").
func TestCancelWhileWalking(t *testing.T) {
	ctx := context.Background()
	kdf := crypto.FastKDFParamsForTests()
	repo, err := repository.Init(ctx, mem.New(), []byte("pw"), repository.InitOptions{Options: repository.Options{KDF: &kdf}})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for d := range 200 {
		dir := filepath.Join(src, fmt.Sprintf("d%03d", d%20), fmt.Sprintf("e%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 10 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", f)), []byte(dir+fmt.Sprint(f)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 12 {
		cctx, cancel := context.WithCancelCause(ctx)
		stop := errors.New("stop")
		// A walker two levels down cancels the backup and lingers before
		// saving its next entry, so the backup has returned by then.
		a := New(repo, Options{Exclude: func(rel string, _ fs.FileInfo) bool {
			if filepath.Base(rel) == "f00" && strings.Contains(rel, "e000") {
				cancel(stop)
				time.Sleep(30 * time.Millisecond)
			}
			return false
		}})
		_, err := a.SnapshotDir(cctx, src)
		cancel(nil)
		if !errors.Is(err, stop) {
			t.Fatalf("run %d: backup returned %v, want the cancellation", i, err)
		}
	}
}
