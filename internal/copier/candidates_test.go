package copier

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/candidates"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/repository/repotest"
)

// TestCopyAvoidsCandidatePacks: when a prune marked every pack of the
// destination as a deletion candidate, copying a snapshot against an
// earlier copy (the seed) reuses neither the seed's unchanged directories
// whole nor its files' blobs: every blob and tree of the new copy has a
// copy outside the marked packs, and the copy restores as the source.
func TestCopyAvoidsCandidatePacks(t *testing.T) {
	ctx := context.Background()
	srcBe, dstBe := mem.New(), mem.New()
	src, dst := repotest.New(t, repotest.Backend(srcBe)), repotest.New(t, repotest.Backend(dstBe))
	dir := t.TempDir()
	writeFiles(t, dir, 1, 12, 100_000)
	s1 := backup(t, src, dir)
	writeFiles(t, filepath.Join(dir, "d9"), 2, 2, 100_000)
	s2 := backup(t, src, dir)

	c, _ := New(src, dst, Options{})
	if _, err := c.Run(ctx, []string{s1.ID.String()}, false, nil); err != nil {
		t.Fatal(err)
	}
	marked := dst.Index().Packs()
	now := time.Now()
	if err := candidates.Save(ctx, dst, &candidates.Record{Time: now, NotBefore: now.Add(24 * time.Hour), Packs: marked}); err != nil {
		t.Fatal(err)
	}

	dst2 := repotest.Open(t, dstBe)
	c2, _ := New(repotest.Open(t, srcBe), dst2, Options{})
	res, err := c2.Run(ctx, []string{s2.ID.String()}, false, nil)
	if err != nil || len(res.Copied) != 1 {
		t.Fatalf("copy: %+v, %v", res, err)
	}
	var copied id.ID
	for _, d := range dstSnapshots(t, dst2) {
		if d.ID.String() == res.Copied[0].Destination {
			copied = d.Tree
		}
	}
	if copied.IsNull() {
		t.Fatal("copy not found")
	}
	if only := repotest.OnlyIn(t, dst2, copied, marked); len(only) > 0 {
		t.Errorf("the copy references what only marked packs hold: %v", only)
	}
	sameContent(t, src, s2.Tree, dst2, copied)
}

// TestContinuousCopyAvoidsCandidatePacks: a continuous copy keeps one
// Copier across rounds, and what it learned in an earlier round (source
// blob and tree -> destination ID) predates the records the next round's
// commit step lists. A round that began while a record marks the packs of
// those destination blobs must not reuse them: a prune deleting the packs
// (it listed the snapshots before this copy was saved) would leave the
// copy pointing at nothing.
func TestContinuousCopyAvoidsCandidatePacks(t *testing.T) {
	ctx := context.Background()
	src, dst := repotest.New(t, repotest.Backend(mem.New())), repotest.New(t, repotest.Backend(mem.New()))
	dir := t.TempDir()
	writeFiles(t, dir, 1, 12, 100_000)
	s1 := backup(t, src, dir)
	writeFiles(t, filepath.Join(dir, "d9"), 2, 2, 100_000)
	s2 := backup(t, src, dir)

	c, _ := New(src, dst, Options{})
	if _, err := c.Run(ctx, []string{s1.ID.String()}, false, nil); err != nil {
		t.Fatal(err)
	}
	marked := dst.Index().Packs()
	now := time.Now()
	if err := candidates.Save(ctx, dst, &candidates.Record{Time: now, NotBefore: now.Add(24 * time.Hour), Packs: marked}); err != nil {
		t.Fatal(err)
	}
	// The next round of the same Copier.
	res, err := c.Run(ctx, []string{s2.ID.String()}, false, nil)
	if err != nil || len(res.Copied) != 1 {
		t.Fatalf("copy: %+v, %v", res, err)
	}
	var copied id.ID
	for _, d := range dstSnapshots(t, dst) {
		if d.ID.String() == res.Copied[0].Destination {
			copied = d.Tree
		}
	}
	if copied.IsNull() {
		t.Fatal("copy not found")
	}
	if only := repotest.OnlyIn(t, dst, copied, marked); len(only) > 0 {
		t.Errorf("the copy references what only marked packs hold: %v", only)
	}
	sameContent(t, src, s2.Tree, dst, copied)
}
