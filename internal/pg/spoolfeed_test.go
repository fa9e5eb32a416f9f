package pg

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runRestoreCommand runs restore_command rc as PostgreSQL does: %f and %p
// expanded, through /bin/sh, in the data directory.
func runRestoreCommand(t *testing.T, dataDir, rc, name, dest string) error {
	t.Helper()
	line := strings.NewReplacer("%f", name, "%p", dest).Replace(rc)
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.Dir = dataDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("%s: %v: %s", line, err, out)
	}
	return err
}

// TestSpoolFirst: the shell hands over a spooled segment without running
// the command; anything else (not spooled, or a rename that fails) runs it.
func TestSpoolFirst(t *testing.T) {
	data := t.TempDir()
	pgWAL := filepath.Join(data, "pg_wal")
	spool := filepath.Join(pgWAL, spoolName)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	ran := filepath.Join(data, "fallback-ran")
	// The fallback records its arguments, as restore-wal would get them.
	boot := bootID()
	if boot == "" {
		t.Skip("no boot_id: the shell's fast path is off")
	}
	rc := spoolFirst("echo %f %p > "+ran, boot)
	dest := filepath.Join(pgWAL, "RECOVERYXLOG")

	name := Segment{TLI: 1, No: 5}.Name(testSegSize)
	seg := makeSegment(1, 5, testSegSize, 3)
	if err := os.WriteFile(filepath.Join(spool, name), seg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runRestoreCommand(t, data, rc, name, "pg_wal/RECOVERYXLOG"); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, seg) {
		t.Fatalf("spooled segment not handed over (%v)", err)
	}
	if exists(filepath.Join(spool, name)) || exists(ran) {
		t.Fatal("spooled segment left in the spool, or the fallback ran for it")
	}

	// Not spooled: the fallback, with PostgreSQL's arguments.
	other := Segment{TLI: 1, No: 6}.Name(testSegSize)
	if err := runRestoreCommand(t, data, rc, other, "pg_wal/RECOVERYXLOG"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(ran); string(b) != other+" pg_wal/RECOVERYXLOG\n" {
		t.Fatalf("fallback got %q", b)
	}
	os.Remove(ran)

	// The rename fails (here: its destination's directory is missing):
	// the fallback runs, so a failure is never read as the end of the
	// archive.
	if err := os.WriteFile(filepath.Join(spool, other), seg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runRestoreCommand(t, data, rc, other, "nodir/RECOVERYXLOG"); err != nil {
		t.Fatal(err)
	}
	if !exists(ran) {
		t.Fatal("the rename failed and the fallback did not run")
	}
	os.Remove(ran)

	// restore_command written in another boot of the machine: a spooled
	// file may be torn (restore-wal's prefetches do not sync), and
	// PostgreSQL would read a torn segment as the end of the WAL. The
	// shell leaves it; restore-wal decides.
	other7 := Segment{TLI: 1, No: 7}.Name(testSegSize)
	if err := os.WriteFile(filepath.Join(spool, other7), seg[:len(seg)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(dest)
	rcOld := spoolFirst("echo %f %p > "+ran, "00000000-0000-4000-8000-000000000000")
	if err := runRestoreCommand(t, data, rcOld, other7, "pg_wal/RECOVERYXLOG"); err != nil {
		t.Fatal(err)
	}
	if exists(dest) || !exists(filepath.Join(spool, other7)) {
		t.Fatal("the shell handed over a segment spooled in another boot")
	}
	if b, _ := os.ReadFile(ran); string(b) != other7+" pg_wal/RECOVERYXLOG\n" {
		t.Fatalf("fallback got %q", b)
	}

	// No boot known (or not a UUID): no fast path at all.
	if got := spoolFirst("cmd %f %p", ""); got != "cmd %f %p" {
		t.Errorf("without a boot: %q", got)
	}
	if got := spoolFirst("cmd %f %p", "x; rm -rf /"); got != "cmd %f %p" {
		t.Errorf("with a boot that is not a UUID: %q", got)
	}
}

// TestFeedSpool: the feed keeps at most ahead segments spooled, in
// recovery's order, skips what the server already took, synced files
// only, and stops when its context ends or the archive does.
func TestFeedSpool(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	repo, _ := newLocalRepo(t)
	segs := archiveRun(t, repo, 1, 12)
	pgWAL := filepath.Join(t.TempDir(), "pg_wal")
	spool := filepath.Join(pgWAL, spoolName)
	if err := os.MkdirAll(pgWAL, 0o700); err != nil {
		t.Fatal(err)
	}
	var names []string
	for no := uint64(1); no <= 13; no++ { // 13: past the end of the archive
		names = append(names, Segment{TLI: 1, No: no}.Name(testSegSize))
	}
	// The server already has segment 1 (restored, kept in pg_wal).
	if err := os.WriteFile(filepath.Join(pgWAL, names[0]), segs[names[0]], 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		feedSpool(ctx, repo, spool, "session test", names, 3, slog.New(slog.DiscardHandler))
	}()
	waitSpooled := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := spoolNames(t, spool)
			if strings.Join(got, ",") == strings.Join(want, ",") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("spool holds %v, want %v", got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitSpooled(names[1:4])
	if !spoolBusy(spool) {
		t.Error("the feed does not hold the spool's lock: restore-wal would start prefetches beside it")
	}
	// The server takes segments 2 and 3: the feed tops up to 3 again.
	for _, n := range names[1:3] {
		if err := os.Rename(filepath.Join(spool, n), filepath.Join(pgWAL, n)); err != nil {
			t.Fatal(err)
		}
	}
	waitSpooled(names[3:6])
	for _, n := range names[3:6] {
		got, err := os.ReadFile(filepath.Join(spool, n))
		if err != nil || !bytes.Equal(got, segs[n]) {
			t.Fatalf("%s: spooled content differs (%v)", n, err)
		}
	}
	// Take everything: the feed fetches to the end of the archive and
	// returns there.
	for i := 3; i < 12; i++ {
		waitSpooled(names[i:min(i+3, 12)])
		if err := os.Rename(filepath.Join(spool, names[i]), filepath.Join(pgWAL, names[i])); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the feed did not return at the end of the archive")
	}
	if spoolBusy(spool) {
		t.Error("the feed left the spool locked")
	}

	// A feed with nothing left to fetch returns when its context ends.
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	if err := os.WriteFile(filepath.Join(spool, names[11]), segs[names[11]], 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(pgWAL, names[11]))
	go func() {
		defer close(done2)
		feedSpool(ctx2, repo, spool, "session test", names, 1, slog.New(slog.DiscardHandler))
	}()
	time.Sleep(50 * time.Millisecond)
	cancel2()
	select {
	case <-done2:
	case <-time.After(10 * time.Second):
		t.Fatal("the feed did not stop when its context ended")
	}
}

func TestPromotionFor(t *testing.T) {
	for _, c := range []struct {
		version int
		latest  bool
		want    Promotion
	}{
		{130012, false, PromoteAsConfigured},
		{150018, true, PromoteAsConfigured},
		{140000, false, PromoteEarly},
		{170004, false, PromoteEarly},
		{180000, false, PromoteAfterPause},
	} {
		if got := PromotionFor(c.version, c.latest); got != c.want {
			t.Errorf("PromotionFor(%d, %v) = %d, want %d", c.version, c.latest, got, c.want)
		}
	}
}

// TestCheckStoppedAtTarget: the new timeline's history file says where
// recovery stopped; "no recovery target specified" (recovery ended
// without reaching it) or no readable file is an error.
func TestCheckStoppedAtTarget(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(tli uint32, body string) {
		p := filepath.Join(dir, "pg_wal", fmt.Sprintf("%08X.history", tli))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(2, "1\t1/77F97440\tbefore transaction 35608 at 2026-12-06 03:52:15.954704+00\n")
	write(3, "1\t1/77F97440\tbefore transaction 35608 at 2026-12-06 03:52:15.954704+00\n2\t1/80000000\tno recovery target specified\n")
	write(4, "1\t1/77F97440\tat restore point \"x\"\n\n")
	if err := checkStoppedAtTarget(dir, 2); err != nil {
		t.Errorf("stopped at a transaction: %v", err)
	}
	if err := checkStoppedAtTarget(dir, 4); err != nil {
		t.Errorf("stopped at a restore point: %v", err)
	}
	if err := checkStoppedAtTarget(dir, 3); err == nil || !strings.Contains(err.Error(), "without reaching its target") {
		t.Errorf("ended without its target: %v", err)
	}
	if err := checkStoppedAtTarget(dir, 5); err == nil {
		t.Error("no history file: no error")
	}
	if err := checkStoppedAtTarget(dir, 0); err == nil {
		t.Error("unknown timeline: no error")
	}
}
