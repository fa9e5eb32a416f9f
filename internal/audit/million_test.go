package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/local"
	"github.com/nestguard/nestguard/internal/crypto"
)

// TestVerifyMillion measures 'audit verify' on a log of
// NESTGUARD_AUDIT_MILLION records (1000000 for the documented figure),
// NESTGUARD_AUDIT_PER_ENTRY records per entry (default 1, what every
// command but the batched ones appends), on a local directory, and the
// storage per record. Not in the default run: it writes a million files.
//
//	NESTGUARD_AUDIT_MILLION=1000000 go test ./internal/audit -run TestVerifyMillion -v -timeout 60m
//
// With NESTGUARD_AUDIT_DIR naming a directory, the log is written there
// and kept; a later run on the same directory times verify alone (with
// NESTGUARD_AUDIT_WORKERS goroutines if set), then ReadTree if the
// directory holds the audit key (millionKey: logs written since it was
// kept): the two passes a compliance report made before it made one.
// With NESTGUARD_AUDIT_ONE_PASS=1 as well, it times that one pass
// (VerifyRead: verified, every record opened, the tree kept) instead.
func TestVerifyMillion(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("NESTGUARD_AUDIT_MILLION"))
	if n <= 0 {
		t.Skip("set NESTGUARD_AUDIT_MILLION to the number of records")
	}
	per, _ := strconv.Atoi(os.Getenv("NESTGUARD_AUDIT_PER_ENTRY"))
	per = max(per, 1)
	dir := os.Getenv("NESTGUARD_AUDIT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if vkey, err := os.ReadFile(filepath.Join(dir, millionVerifier)); err == nil {
		if os.Getenv("NESTGUARD_AUDIT_ONE_PASS") == "1" {
			timeVerifyRead(t, dir, string(vkey), n)
			return
		}
		be, rep := timeVerify(t, dir, string(vkey), n)
		k, err := readMillionKey(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			t.Logf("ReadTree not timed: %s holds no %s (written before the test kept the key)", dir, millionKey)
		case err != nil:
			t.Fatal(err)
		default:
			defer k.Close()
			timeReadTree(t, New(be, k, testLogID), rep.Newest, n)
		}
		return
	}
	f := newFixtureIn(t, dir)
	began := time.Now()
	bytesStored := writeSynthetic(t, f, n, per)
	t.Logf("wrote %d records in %d entries in %s: %d bytes, %.0f bytes per record (plus the file system's own per-file cost)",
		n, (n+per-1)/per, time.Since(began).Round(time.Second), bytesStored, float64(bytesStored)/float64(n))
	vkey, err := f.log.Verifier(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, millionVerifier), []byte(vkey), 0o644); err != nil {
		t.Fatal(err)
	}
	writeMillionKey(t, dir, f.log.key)

	began = time.Now()
	rep := f.verify(t)
	el := time.Since(began)
	if !rep.OK() || rep.Records != uint64(n) {
		t.Fatalf("verify: %d records, problems %q", rep.Records, rep.Problems)
	}
	t.Logf("audit verify of %d records in %d entries: %s (%.1f µs per record), GOMAXPROCS %d",
		n, rep.Entries, el.Round(time.Millisecond), float64(el.Microseconds())/float64(n), runtime.GOMAXPROCS(0))

	tr := timeReadTree(t, f.log, rep.Newest, n)
	began = time.Now()
	const proofs = 1000
	for i := range proofs {
		p, err := tr.Prove(uint64(i*7919) % uint64(n))
		if err == nil {
			err = VerifyInclusion(rep.Newest, p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d inclusion proofs made and checked: %s", proofs, time.Since(began).Round(time.Millisecond))
}

// timeReadTree times what a compliance report does after verifying: read
// every record of l up to cp (n of them), opened, with their tree.
func timeReadTree(t *testing.T, l *Log, cp *Checkpoint, n int) *Tree {
	t.Helper()
	began := time.Now()
	opened := 0
	tr, err := l.ReadTree(context.Background(), cp, func(_ uint64, _ *Record, err error) error {
		if err != nil {
			return err
		}
		opened++
		return nil
	})
	if err != nil || opened != n {
		t.Fatalf("ReadTree: %d records opened: %v", opened, err)
	}
	el := time.Since(began)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("ReadTree of %d records (each opened) and their tree: %s (%.1f µs per record), heap with the tree %d MiB",
		n, el.Round(time.Millisecond), float64(el.Microseconds())/float64(n), ms.HeapAlloc>>20)
	return tr
}

// timeVerifyRead times what a compliance report does with the log in dir
// (written by an earlier run with its key kept, n records, verifier key
// vkey): one pass that verifies it and opens every record, keeping the
// tree.
func timeVerifyRead(t *testing.T, dir, vkey string, n int) {
	t.Helper()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := readMillionKey(dir)
	if err != nil {
		t.Fatalf("the one pass opens every record: %v", err)
	}
	defer k.Close()
	workers, _ := strconv.Atoi(os.Getenv("NESTGUARD_AUDIT_WORKERS"))
	began := time.Now()
	opened := 0
	rep, tr, err := New(be, k, testLogID).VerifyRead(context.Background(), VerifyOptions{Verifier: v, Workers: workers}, func(_ uint64, _ *Record, err error) error {
		if err != nil {
			return err
		}
		opened++
		return nil
	})
	el := time.Since(began)
	if err != nil || !rep.OK() || rep.Records != uint64(n) || opened != n || tr == nil {
		t.Fatalf("VerifyRead of the log in %s: %d records (want %d), %d opened, problems %q: %v", dir, rep.Records, n, opened, rep.Problems, err)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(tr)
	t.Logf("VerifyRead (one pass: listed, verified, each record opened, the tree kept) of the existing log in %s, %d records in %d entries: %s (%.1f µs per record), heap with the tree %d MiB, GOMAXPROCS %d, workers %d (0: the default)",
		dir, n, rep.Entries, el.Round(time.Millisecond), float64(el.Microseconds())/float64(n), ms.HeapAlloc>>20, runtime.GOMAXPROCS(0), workers)
}

// millionKey is the file, beside millionVerifier, where TestVerifyMillion
// keeps the audit key of the log it wrote (wrapped under
// millionPassphrase with the cheapest key derivation: a test log's key,
// protected by nothing), so that a later run can time ReadTree, which
// opens every record.
const (
	millionKey        = "million-audit-key.json"
	millionPassphrase = "nestguard audit million test"
)

func writeMillionKey(t *testing.T, dir string, k *crypto.Key) {
	t.Helper()
	s, err := crypto.WrapKey(k, []byte(millionPassphrase), crypto.FastKDFParamsForTests(), crypto.SlotInfo{Label: "TestVerifyMillion"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, millionKey), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readMillionKey(dir string) (*crypto.Key, error) {
	b, err := os.ReadFile(filepath.Join(dir, millionKey))
	if err != nil {
		return nil, err
	}
	var s crypto.Slot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", millionKey, err)
	}
	return crypto.UnwrapKey(&s, []byte(millionPassphrase))
}

// millionVerifier is the file, beside the repository's layout in
// NESTGUARD_AUDIT_DIR, where TestVerifyMillion keeps the verifier key of
// the log it wrote: run again on the same directory, it times verify of
// that log alone (cold or warm page cache) without writing it again.
const millionVerifier = "million-verifier.pub"

// timeVerify times Verify of the log in dir, written by an earlier run,
// with verifier key vkey; it must hold n records. It returns the
// directory's backend and the report.
func timeVerify(t *testing.T, dir, vkey string, n int) (backend.Backend, *Report) {
	t.Helper()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	workers, _ := strconv.Atoi(os.Getenv("NESTGUARD_AUDIT_WORKERS"))
	began := time.Now()
	starts, err := entryStarts(context.Background(), be, testLogID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("listing %d entries: %s", len(starts), time.Since(began).Round(time.Millisecond))
	began = time.Now()
	rep, err := Verify(context.Background(), be, testLogID, VerifyOptions{Verifier: v, Workers: workers})
	el := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Records != uint64(n) {
		t.Fatalf("verify of the log in %s: %d records (want %d), problems %q", dir, rep.Records, n, rep.Problems)
	}
	t.Logf("audit verify of the existing log in %s, %d records in %d entries: %s (%.1f µs per record), GOMAXPROCS %d, workers %d (0: Verify's default)",
		dir, n, rep.Entries, el.Round(time.Millisecond), float64(el.Microseconds())/float64(n), runtime.GOMAXPROCS(0), workers)
	return be, rep
}

func newFixtureIn(t *testing.T, dir string) *fixture {
	t.Helper()
	f := newFixture(t)
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.dir, f.be = dir, be
	f.log = New(be, f.log.key, testLogID)
	vkey, err := f.log.Verifier(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f.v, err = note.NewVerifier(vkey); err != nil {
		t.Fatal(err)
	}
	return f
}

// writeSynthetic writes n typical records (a backup's) as entries of per
// records straight into the directory (no fsync: setup only), with the
// bytes Append would store, and returns the bytes stored.
func writeSynthetic(t *testing.T, f *fixture, n, per int) int64 {
	t.Helper()
	type job struct {
		e    *entry
		text string
	}
	jobs := make(chan job, 1024)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				msg, err := note.Sign(&note.Note{Text: j.text}, f.log.signer)
				if err != nil {
					t.Error(err)
					return
				}
				j.e.note = msg
				b := j.e.encode()
				p := filepath.Join(f.dir, string(backend.AuditFile), entryName(testLogID, j.e.start))
				if err := os.WriteFile(p, b, 0o444); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += int64(len(b))
				mu.Unlock()
			}
		}()
	}
	rng := rangeFactory.NewEmptyRange(0)
	for start := 0; start < n; start += per {
		k := min(per, n-start)
		e := &entry{logID: testLogID, start: uint64(start)}
		for i := range k {
			r := &Record{Time: time.Unix(1733389200+int64(start+i), 0).UTC(), User: "postgres", Host: "db1.example.com",
				KeySlot: "6534d742394e7ff147cc86e1e12f9b6a02774afcb67dddab366c5d7591c3301f", Command: "backup",
				Options:    map[string]string{"tag": "[nightly]", "exclude": "[]", "host": "", "one-file-system": "false", "parent": "", "repo": "s3://backups/prod"},
				Repository: "s3://backups/prod", Args: []string{"/srv/app"}, Outcome: Success, Duration: 93 * time.Second,
				Wrote: []string{"snapshots/923016b1218fe18b536976d23158b97a6c2d498429d1388b05a63bf8bb7ee1d7", "data: 12 objects", "index: 1 objects"}}
			sealed, err := sealRecord(f.log.key, testLogID, r)
			if err != nil {
				t.Fatal(err)
			}
			e.records = append(e.records, sealed)
			if err := rng.Append(leafHash(sealed), nil); err != nil {
				t.Fatal(err)
			}
		}
		root, err := rng.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		e.frontier = rng.Hashes()
		jobs <- job{e, checkpointText(testLogID, rng.End(), root)}
	}
	close(jobs)
	wg.Wait()
	return total
}
