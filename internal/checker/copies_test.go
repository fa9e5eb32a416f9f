package checker

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// damagePack replaces pack p of be with its bytes with one flipped every
// KiB: none of its blobs authenticates.
func damagePack(t *testing.T, be backend.Backend, p id.ID) {
	t.Helper()
	ctx := context.Background()
	h := backend.Handle{Type: backend.PackFile, Name: p.String()}
	rd, err := be.Load(ctx, h, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(rd)
	rd.Close()
	b := buf.Bytes()
	for i := 10; i < len(b); i += 1024 {
		b[i] ^= 0x20
	}
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedCopyIsDamageButNoLoss: every blob of a snapshot sits in two
// packs (two backups of the same data at once). With the copies the index
// names first damaged, verify must report each damaged pack, say where
// its blobs still read from, and report no snapshot damaged; with both
// copies damaged, the snapshot is damaged.
func TestDamagedCopyIsDamageButNoLoss(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	r := repotest.New(t, repotest.Backend(be))
	other := repotest.Open(t, be) // opened before the backup wrote anything
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range 6 {
		b := make([]byte, 300_000)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := archiver.Backup(ctx, r, []string{dir}, archiver.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	repotest.StoreAgain(t, r, other)

	check := func(r *repository.Repository) *Report {
		t.Helper()
		rep, err := New(r, Options{ReadData: true}).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	r = repotest.Open(t, be)
	if rep := check(r); !rep.OK() {
		t.Fatalf("before any damage: %+v", rep)
	}
	// Damage the packs this handle reads first (which copy is first
	// depends on the order the index objects were read in).
	primary := map[id.ID]bool{}
	r.Index().Each(func(e index.Entry) bool { primary[e.Pack] = true; return true })
	for p := range primary {
		damagePack(t, be, p)
	}
	rep := check(r)
	if len(rep.DamagedSnapshots) != 0 {
		t.Errorf("snapshot reported damaged though every blob still reads from another pack: %+v", rep.DamagedSnapshots)
	}
	for p := range primary {
		var msgs []string
		for _, pr := range rep.Problems {
			if pr.Object == "data/"+p.String() {
				msgs = append(msgs, pr.Error)
			}
		}
		if len(msgs) == 0 || !strings.Contains(strings.Join(msgs, "\n"), "still reads from pack") {
			t.Errorf("damaged pack %s: problems %q, want damage naming the pack its blobs still read from", p.Short(), msgs)
		}
	}

	// Both copies damaged: the loss is reported.
	r.Index().EachLocation(func(e index.Entry) bool {
		if !primary[e.Pack] {
			primary[e.Pack] = true
			damagePack(t, be, e.Pack)
		}
		return true
	})
	r = repotest.Open(t, be)
	if rep := check(r); len(rep.DamagedSnapshots) != 1 {
		t.Errorf("every copy damaged: %d damaged snapshots, want 1", len(rep.DamagedSnapshots))
	}
}
