package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConcurrentCopiesCopyEachSnapshotOnce: two 'copy --all' into one
// destination at once (a --continuous copy and a manual one, or
// overlapping cron runs) leave each source snapshot once in the
// destination: the writer that finds the other's copy just before saving
// (or just after, with a larger ID) reports it already there. They copied
// every snapshot twice, and 'forget --keep-last 2' then kept two copies
// of the newest and removed the second newest backup.
func TestConcurrentCopiesCopyEachSnapshotOnce(t *testing.T) {
	t.Parallel()
	src := newEnv(t)
	dst := newEnv(t)
	dir := filepath.Join(src.dir, "src")
	os.MkdirAll(dir, 0o755)
	src.must("init")
	for i := range 4 {
		writeRandom(t, filepath.Join(dir, "f"), 4<<20, 4630+uint64(i))
		src.must("backup", dir)
	}
	dst.must("init")
	dst.extraEnv = append(dst.extraEnv, "NESTGUARD_FROM_PASSWORD="+src.pass)
	a := dst.cmd("copy", "--from-repo", src.repo, "--all")
	b := dst.cmd("copy", "--from-repo", src.repo, "--all")
	var outA, outB bytes.Buffer
	a.Stdout, a.Stderr = &outA, &outA
	b.Stdout, b.Stderr = &outB, &outB
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	ea, eb := a.Wait(), b.Wait()
	if ea != nil || eb != nil {
		t.Fatalf("copies: %v, %v\n%s\n%s", ea, eb, outA.String(), outB.String())
	}
	got := copiedFrom(t, src, dst)
	if want := src.snapshotIDs(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("two copies at once left copies of %v in the destination, want one of each of %v\n%s\n%s", got, want, outA.String(), outB.String())
	}
	// Each source snapshot was copied by one of them, and found there by
	// the other.
	if n := len(regexp.MustCompile(`(?m)^snapshot \S+ copied as `).FindAllString(outA.String()+outB.String(), -1)); n != 4 {
		t.Errorf("%d snapshots reported copied, want 4\n%s\n%s", n, outA.String(), outB.String())
	}
	dst.must("verify")
}
