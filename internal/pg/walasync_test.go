package pg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/repository"
)

// walDir makes a pg_wal with n segments queued in archive_status and
// returns it with the segments' names.
func walDir(t *testing.T, n int, seed uint64) (string, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pg_wal")
	if err := os.MkdirAll(filepath.Join(dir, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	const segSize = 1 << 20
	var names []string
	for i := range n {
		no := uint64(40 + i)
		name := Segment{TLI: 1, No: no}.Name(segSize)
		writeFile(t, dir, name, makeSegment(1, no, segSize, seed))
		writeFile(t, filepath.Join(dir, "archive_status"), name+".ready", nil)
		names = append(names, name)
	}
	return dir, names
}

// archived is what PostgreSQL does once archive_command exits 0.
func archived(t *testing.T, dir, name string) {
	t.Helper()
	st := filepath.Join(dir, "archive_status", name)
	if err := os.Rename(st+".ready", st+".done"); err != nil {
		t.Fatal(err)
	}
}

// inProcessWorker starts RunArchiveWorker in a goroutine for StartWorker.
type inProcessWorker struct {
	t      *testing.T
	repo   WALRepo
	dir    string
	wg     sync.WaitGroup
	starts int
	mu     sync.Mutex
	errs   []error
}

func (w *inProcessWorker) start(spool string) error {
	w.mu.Lock()
	w.starts++
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		_, err := RunArchiveWorker(context.Background(), w.repo, WorkerOptions{WALDir: w.dir, SpoolDir: spool, Ahead: 4, Idle: 300 * time.Millisecond})
		if err != nil {
			w.mu.Lock()
			w.errs = append(w.errs, err)
			w.mu.Unlock()
		}
	}()
	return nil
}

func (w *inProcessWorker) wait() {
	w.wg.Wait()
	if len(w.errs) > 0 {
		w.t.Fatalf("worker: %v", w.errs)
	}
}

func checkStored(t *testing.T, repo WALRepo, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		got, err := repo.LoadNamed(context.Background(), backend.WALFile, n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		want, _ := os.ReadFile(filepath.Join(dir, n))
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: stored copy differs", n)
		}
	}
}

func TestArchiveWALAsync(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	dir, names := walDir(t, 7, 1)
	w := &inProcessWorker{t: t, repo: repo, dir: dir}
	for _, n := range names {
		res, err := ArchiveWALAsync(ctx, filepath.Join(dir, n), n, AsyncOptions{StartWorker: w.start})
		if err != nil || res.Size != 1<<20 {
			t.Fatalf("%s: %+v, %v", n, res, err)
		}
		archived(t, dir, n)
	}
	checkStored(t, repo, dir, names...)
	w.wait()
	if w.starts == 0 {
		t.Fatal("no worker was started")
	}
	// The worker removed the acknowledgements PostgreSQL no longer needs
	// before it exited, but the last group's.
	left, _ := filepath.Glob(filepath.Join(dir, ArchiveSpoolName, "*.ok"))
	if len(left) > 4 {
		t.Errorf("acknowledgements left: %v", left)
	}

	// Not queued (no .ready): the caller archives it itself.
	if _, err := ArchiveWALAsync(ctx, filepath.Join(dir, names[0]), names[0], AsyncOptions{StartWorker: w.start}); !errors.Is(err, ErrNotQueued) {
		t.Fatalf("not queued: %v", err)
	}
}

func TestArchiveWALAsyncMarkers(t *testing.T) {
	ctx := context.Background()
	repo, _ := newLocalRepo(t)
	dir, names := walDir(t, 2, 2)
	spool := ArchiveSpool(filepath.Join(dir, names[0]), "")
	if err := makeSpool(spool); err != nil {
		t.Fatal(err)
	}
	never := func(string) error { return nil } // a worker that does nothing
	seg := filepath.Join(dir, names[0])
	data, _ := os.ReadFile(seg)
	sum := contentDigest(data)
	other := sum
	other[0] ^= 1
	size := int64(len(data))
	ident := func(p string) fileIdent {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := identOf(fi)
		return id
	}
	// The identity this file had before it was rewritten in place (new
	// content, new times, same inode and size), and another file's.
	before := ident(seg)
	data2 := makeSegment(1, 40, 1<<20, 77)
	if err := os.WriteFile(seg, data2, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(seg, time.Time{}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if after := ident(seg); after == before {
		t.Fatal("rewriting the file did not change its identity")
	}
	cp := writeFile(t, t.TempDir(), names[0], data)

	var none fileIdent
	var noSum [32]byte
	for _, bad := range [][]byte{
		formatOK(names[0], size, before, noSum),                                                                    // the file before it was rewritten: a stale acknowledgement
		formatOK(names[0], size, ident(cp), noSum),                                                                 // a copy elsewhere: the worker is asked to compare
		formatOK(names[0], size, none, other),                                                                      // no identity, another content
		formatOK(names[0], size-1, ident(seg), noSum),                                                              // another size
		formatOK(names[0], size-1, none, contentDigest(data2)),                                                     // another size, by digest
		formatOK(names[1], size, ident(seg), noSum),                                                                // another name
		formatOK(names[0], size, ident(seg), noSum)[:60],                                                           // torn
		[]byte(strings.ToUpper(string(formatOK(names[0], size, ident(seg), noSum)))),                               // edited
		[]byte(strings.Replace(string(formatOK(names[0], size, ident(seg), noSum)), "file ", "file 0", 1)),         // a number not in its canonical form
		[]byte(strings.Replace(string(formatOK(names[0], size, none, contentDigest(data2))), "ok v2", "ok v1", 1)), // the format before
	} {
		if err := os.WriteFile(filepath.Join(spool, names[0]+".ok"), bad, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ArchiveWALAsync(ctx, seg, names[0], AsyncOptions{StartWorker: never, Timeout: 50 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "not acknowledged") {
			t.Fatalf("a marker %q was trusted: %v", bad, err)
		}
		if _, err := os.Stat(filepath.Join(spool, names[0]+".ok")); err == nil {
			t.Fatal("the unusable marker is still there")
		}
	}
	// This content, by digest (a system without file identities), and
	// this very file.
	for _, good := range [][]byte{
		formatOK(names[0], size, none, contentDigest(data2)),
		formatOK(names[0], size, ident(seg), noSum),
	} {
		os.WriteFile(filepath.Join(spool, names[0]+".ok"), good, 0o600)
		if _, err := ArchiveWALAsync(ctx, seg, names[0], AsyncOptions{StartWorker: never, Timeout: 50 * time.Millisecond}); err != nil {
			t.Fatalf("a marker %q was not trusted: %v", good, err)
		}
	}
	os.Remove(filepath.Join(spool, names[0]+".ok"))

	// A different file already stored under the name: the worker's error
	// reaches the call, which fails, and the marker is gone for the retry.
	if err := repo.SaveNamed(ctx, backend.WALFile, names[1], makeSegment(1, 41, 1<<20, 99)); err != nil {
		t.Fatal(err)
	}
	w := &inProcessWorker{t: t, repo: repo, dir: dir}
	_, err := ArchiveWALAsync(ctx, filepath.Join(dir, names[1]), names[1], AsyncOptions{StartWorker: w.start})
	if err == nil || !strings.Contains(err.Error(), ErrArchivedDiffers.Error()) {
		t.Fatalf("a differing file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(spool, names[1]+".error")); err == nil {
		t.Fatal("the error marker was not taken")
	}
	// The first segment, stored already with this content, and an
	// acknowledgement that names a copy of it: not trusted, the worker
	// is asked again, finds the name stored and identical, and
	// acknowledges this very file.
	if err := repo.SaveNamed(ctx, backend.WALFile, names[0], data2); err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err) // (the worker may have stored it meanwhile)
	}
	if err := os.WriteFile(filepath.Join(spool, names[0]+".ok"), formatOK(names[0], size, ident(cp), noSum), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ArchiveWALAsync(ctx, filepath.Join(dir, names[0]), names[0], AsyncOptions{StartWorker: w.start}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(spool, names[0]+".ok")); err != nil || !bytes.Equal(b, formatOK(names[0], size, ident(seg), noSum)) {
		t.Fatalf("the worker's acknowledgement: %q, %v", b, err)
	}
	w.wait()

	// The worker could not run at all: its error is the call's. (The
	// worker tried names[1] again once its error was taken: that is the
	// retry's answer, out of the way here.)
	os.Remove(filepath.Join(spool, names[1]+".error"))
	if err := WriteWorkerError(spool, errors.New("wrong key file")); err != nil {
		t.Fatal(err)
	}
	_, err = ArchiveWALAsync(ctx, filepath.Join(dir, names[1]), names[1], AsyncOptions{StartWorker: func(spool string) error {
		return WriteWorkerError(spool, errors.New("wrong key file"))
	}})
	if err == nil || !strings.Contains(err.Error(), "wrong key file") {
		t.Fatalf("worker failure: %v", err)
	}

	// A spool others may write is refused.
	os.Chmod(spool, 0o777)
	if _, err := ArchiveWALAsync(ctx, filepath.Join(dir, names[0]), names[0], AsyncOptions{StartWorker: never}); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("open spool: %v", err)
	}
}

// The helper process of TestArchiveWorkerKilled: a worker that kills itself
// with SIGKILL at a step, or is killed from outside.
func TestArchiveWorkerHelper(t *testing.T) {
	step := os.Getenv("NESTGUARD_TEST_WORKER_KILL")
	if step == "" {
		t.Skip("helper process")
	}
	ctx := context.Background()
	be, err := local.Open(os.Getenv("NESTGUARD_TEST_WORKER_REPO"))
	if err != nil {
		t.Fatal(err)
	}
	kdf := crypto.FastKDFParamsForTests()
	repo, err := repository.Open(ctx, be, []byte("pw"), repository.Options{KDF: &kdf})
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("NESTGUARD_TEST_WORKER_WAL")
	log := filepath.Join(dir, "recorded")
	groups := 0
	_, err = RunArchiveWorker(ctx, repo, WorkerOptions{WALDir: dir, Ahead: 4, Parallel: 2, Idle: 10 * time.Second,
		Record: func(ctx context.Context, outs []WorkerOutcome) error {
			f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			for _, o := range outs {
				fmt.Fprintln(f, o.Name)
			}
			if err := f.Sync(); err != nil {
				return err
			}
			return f.Close()
		},
		Hook: func(s string) {
			if s == "archived" {
				groups++
			}
			if s == step && groups >= 2 { // mid-run: a group acknowledged before
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
}

// TestArchiveWorkerKilled kills the worker (SIGKILL) at each step of a
// group and at random instants: no file is ever acknowledged that is not
// stored and recorded, and the next worker finishes the work.
func TestArchiveWorkerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	for _, step := range []string{"archived", "stored", "recorded", "acknowledged", "random", "random"} {
		t.Run(step, func(t *testing.T) {
			repo, repoDir := newLocalRepo(t)
			dir, names := walDir(t, 12, 3)
			c := exec.Command(os.Args[0], "-test.run=^TestArchiveWorkerHelper$", "-test.count=1")
			c.Env = append(os.Environ(), "NESTGUARD_TEST_WORKER_KILL="+step, "NESTGUARD_TEST_WORKER_REPO="+repoDir, "NESTGUARD_TEST_WORKER_WAL="+dir)
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			if step == "random" {
				time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
				c.Process.Signal(syscall.SIGKILL)
			}
			err := c.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				if step != "random" {
					t.Fatalf("the worker was not killed: %v", err)
				}
			}
			recorded := map[string]bool{}
			if f, err := os.Open(filepath.Join(dir, "recorded")); err == nil {
				for sc := bufio.NewScanner(f); sc.Scan(); {
					recorded[sc.Text()] = true
				}
				f.Close()
			}
			spool := filepath.Join(dir, ArchiveSpoolName)
			acked := 0
			for _, n := range names {
				b, err := os.ReadFile(filepath.Join(spool, n+".ok"))
				if err != nil {
					continue
				}
				acked++
				if _, err := parseOK(b); err != nil {
					continue // torn: not an acknowledgement
				}
				if !recorded[n] {
					t.Errorf("%s acknowledged but not recorded", n)
				}
				checkStored(t, repo, dir, n)
			}
			t.Logf("killed at %s: %d of %d acknowledged", step, acked, len(names))
			if step != "random" && acked == 0 {
				t.Error("killed before any acknowledgement: the step was not mid-run")
			}

			// PostgreSQL calls again: a new worker finishes.
			w := &inProcessWorker{t: t, repo: repo, dir: dir}
			for _, n := range names {
				if _, err := ArchiveWALAsync(ctx, filepath.Join(dir, n), n, AsyncOptions{StartWorker: w.start}); err != nil {
					t.Fatalf("%s: %v", n, err)
				}
				archived(t, dir, n)
			}
			w.wait()
			checkStored(t, repo, dir, names...)
		})
	}
}
