package main

// Storage faults that must end a command in bounded time with a message
// that says what is wrong (found by the hostile-storage review).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/miniotest"
)

// runIdle runs nestguard in this process, as e.runHere does, with S3
// requests failing after idle without progress from the store.
func (e *env) runIdle(idle time.Duration, args ...string) result {
	e.t.Helper()
	env := append([]string{"NESTGUARD_PASSWORD=" + e.pass}, e.extraEnv...)
	return runSystemWith(os.LookupEnv, env, fastKDF(),
		ngArgs(append([]string{"--repo", e.repo}, args...)), func(s *system) { s.s3IdleTimeout = idle })
}

// A store that sends a GET's headers and part of its body and then
// nothing more (a server frozen by SIGSTOP, a stuck load balancer, a
// half-open connection) fails the restore in bounded time, with a
// message naming the store, instead of hanging for ever.
func TestS3RestoreFromStalledStoreFails(t *testing.T) {
	t.Parallel()
	if !inProcessEnv(nil) {
		t.Skip("needs in-process runs (the idle timeout is set in-process only)")
	}
	srv, _ := s3Env(t, miniotest.MinIO, map[string]bool{"stall": false})
	e := newEnv(t)
	e.repo = "s3://stall/repo"
	src := filepath.Join(e.dir, "src")
	writeRandomFiles(t, src, 2, 1<<20)
	e.must("init")
	e.must("backup", src)

	p := srv.Proxy(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the proxy closes
	var stalled atomic.Int64
	p.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/data/") {
			return false
		}
		stalled.Add(1)
		p.StallBody(w, r, release) // the rest never comes
		return true
	})

	to := *e
	to.extraEnv = append(append([]string{}, e.extraEnv...), "NESTGUARD_S3_ENDPOINT="+p.URL)
	const idle = time.Second
	done := make(chan result, 1)
	start := time.Now()
	go func() { done <- to.runIdle(idle, "restore", "latest", "--target", filepath.Join(e.dir, "restore")) }()
	var r result
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("restore hangs: still running 2 minutes after the store stopped sending a body (%d GETs stalled)", stalled.Load())
	}
	t.Logf("restore from a stalled store: exit %d after %v, %d GETs stalled\n%s", r.code, time.Since(start).Round(time.Millisecond), stalled.Load(), r.stderr)
	if r.code == 0 {
		t.Errorf("restore from a stalled store: exit 0\n%s%s", r.stdout, r.stderr)
	}
	host := strings.TrimPrefix(p.URL, "http://")
	if want := "the storage at " + host + " did not answer within"; !strings.Contains(r.stderr, want) {
		t.Errorf("restore from a stalled store: the message does not say %q:\n%s", want, r.stderr)
	}
}

// AWS_PROFILE naming a profile whose secret key line is misspelt is an
// error naming the profile, as with the AWS tools ("partial
// credentials"), not a turn to the next source of credentials (here a
// container's endpoint; on EC2 the instance role), with other rights.
func TestS3NamedProfileWithPartialKeysRefused(t *testing.T) {
	t.Parallel()
	var asked atomic.Int64
	ecs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"AccessKeyId":"AKIAINSTANCEROLE","SecretAccessKey":"instance-role-secret","Token":"tok","Expiration":"2099-01-01T00:00:00Z"}`))
	}))
	t.Cleanup(ecs.Close)
	e := newEnv(t)
	e.repo = "s3://bucket/repo"
	creds := filepath.Join(e.dir, "credentials")
	writeFile(t, creds, "[prod]\naws_access_key_id = AKIAPRODKEY\naws_secrt_access_key = typo\n", 0o600)
	run := *e
	run.extraEnv = append(append([]string{}, e.extraEnv...),
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=",
		"AWS_SHARED_CREDENTIALS_FILE="+creds, "AWS_CONFIG_FILE="+filepath.Join(e.dir, "none"),
		"AWS_PROFILE=prod", "AWS_CONTAINER_CREDENTIALS_FULL_URI="+ecs.URL+"/creds",
		"NESTGUARD_S3_ENDPOINT=127.0.0.1:1")
	run.subprocess = true
	r := run.run("snapshots")
	if asked.Load() > 0 {
		t.Errorf("AWS_PROFILE=prod with an incomplete key pair fell through to the container credentials (%d requests)\n%s", asked.Load(), r.stderr)
	}
	if r.code == 0 || !strings.Contains(r.stderr, `profile "prod" has partial credentials`) || !strings.Contains(r.stderr, "aws_secret_access_key is missing") {
		t.Errorf("exit %d; want an error naming the profile and the missing key:\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "AKIAPRODKEY") || strings.Contains(r.stderr, "typo") {
		t.Errorf("the error repeats the profile's values:\n%s", r.stderr)
	}
}

// A store (or a gateway before it) that answers 200 to an upload it
// dropped is not believed: backup and pg archive-wal fail, so that
// PostgreSQL keeps the segment, instead of exiting 0 with nothing
// stored.
func TestS3DroppedUploadsFail(t *testing.T) {
	t.Parallel()
	srv, _ := s3Env(t, miniotest.MinIO, map[string]bool{"drop": false})
	e := newEnv(t)
	e.repo = "s3://drop/repo"
	e.must("init")
	p := srv.Proxy(t)
	p.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/data/") && !strings.Contains(r.URL.Path, "/wal/") {
			return false
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("ETag", `"d41d8cd98f00b204e9800998ecf8427e"`)
		w.WriteHeader(http.StatusOK)
		return true
	})
	to := *e
	to.extraEnv = append(append([]string{}, e.extraEnv...), "NESTGUARD_S3_ENDPOINT="+p.URL)

	src := filepath.Join(e.dir, "src")
	writeRandomFiles(t, src, 2, 100_000)
	if r := to.run("backup", src); r.code == 0 || !strings.Contains(r.stderr, "did not store what was sent") {
		t.Errorf("backup whose packs the store dropped: exit %d, want a failure saying so\n%s%s", r.code, r.stdout, r.stderr)
	}
	hist := filepath.Join(e.dir, "00000002.history")
	writeFile(t, hist, "1\t0/3000000\tno recovery target specified\n", 0o600)
	if r := to.run("pg", "archive-wal", hist); r.code == 0 || !strings.Contains(r.stderr, "did not store what was sent") {
		t.Errorf("pg archive-wal whose segment the store dropped: exit %d, want a failure saying so\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A store that takes an upload and never answers fails pg archive-wal
// in bounded time (PostgreSQL's archiving waits for it), with a final
// message that says the store did not answer, once the SDK no longer
// repeats each timed-out request on top of the retries.
func TestS3SilentStoreArchiveWALFails(t *testing.T) {
	t.Parallel()
	if !inProcessEnv(nil) {
		t.Skip("needs in-process runs (the idle timeout is set in-process only)")
	}
	srv, _ := s3Env(t, miniotest.MinIO, map[string]bool{"silent": false})
	e := newEnv(t)
	e.repo = "s3://silent/repo"
	e.must("init")
	p := srv.Proxy(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var puts atomic.Int64
	p.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/wal/") {
			return false
		}
		puts.Add(1)
		io.Copy(io.Discard, r.Body)
		<-release // never answers
		return true
	})
	to := *e
	to.extraEnv = append(append([]string{}, e.extraEnv...), "NESTGUARD_S3_ENDPOINT="+p.URL)
	hist := filepath.Join(e.dir, "00000002.history")
	writeFile(t, hist, "1\t0/3000000\tno recovery target specified\n", 0o600)
	start := time.Now()
	r := to.runIdle(time.Second, "pg", "archive-wal", hist)
	took := time.Since(start)
	host := strings.TrimPrefix(p.URL, "http://")
	if r.code == 0 || !strings.Contains(r.stderr, "the storage at "+host+" did not answer within 1s; check it and run the command again") {
		t.Errorf("pg archive-wal to a silent store: exit %d, want 1 and a message naming the store\n%s", r.code, r.stderr)
	}
	if n := puts.Load(); n > 6 {
		t.Errorf("%d PUTs for at most 6 attempts: the SDK repeated timed-out requests", n)
	}
	if took > time.Minute {
		t.Errorf("pg archive-wal to a silent store took %v", took)
	}
}

// TestS3ThrottledStoreIsNotDamage: a store that answers pack GETs with
// 503 SlowDown (throttling, an outage) is not a damaged repository
// (hostile-s3 M2). verify --read-data said "damaged snapshot ...
// directory listing lost ... the repository is damaged", and restore
// exited 3 ("partial": some files unreadable or damaged), or said "run
// 'nestguard verify'" when it could not read the root tree.
func TestS3ThrottledStoreIsNotDamage(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel()
		testThrottledStoreIsNotDamage(t, k)
	})
}

func testThrottledStoreIsNotDamage(t *testing.T, k miniotest.Kind) {
	srv, _ := s3Env(t, k, map[string]bool{"slow": false})
	e := newEnv(t)
	e.repo = "s3://slow/repo"
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 5, 5, 20_000)
	writeRandomFiles(t, filepath.Join(src, "big"), 3, 1<<20)
	e.must("init")
	snap := e.backupJSON(src)["snapshot"].(string)

	// Every pack GET, or only those of more than 64 KiB (file data: the
	// trees are smaller), is throttled.
	var onlyLarge atomic.Bool
	p := srv.Proxy(t)
	p.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/data/") {
			return false
		}
		var from, to int64
		if n, _ := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &from, &to); onlyLarge.Load() && n == 2 && to-from < 64<<10 {
			return false
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
		return true
	})
	slow := *e
	// Two tries an operation (AWS_MAX_ATTEMPTS), not six: the same
	// outcome in a second rather than 11 s an operation.
	slow.extraEnv = append(append([]string{}, e.extraEnv...), "NESTGUARD_S3_ENDPOINT="+p.URL, "AWS_MAX_ATTEMPTS=2")
	notDamage := func(what string, r result) {
		t.Helper()
		for _, s := range []string{"damaged snapshot", "repository is damaged", "directory listing lost", "nestguard verify", "repair", "forget", "0 of 0"} {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Errorf("%s against a throttling store says %q:\n%s%s", what, s, r.stdout, r.stderr)
			}
		}
	}

	r := slow.run("verify", "--read-data")
	if r.code != 1 {
		t.Errorf("verify --read-data against a throttling store: exit %d, want 1", r.code)
	}
	notDamage("verify --read-data", r)
	if !regexp.MustCompile(`(?s)not read: data/.*nestguard: could not read \d+ objects? from the storage \(data/.*SlowDown.*\), so 1 snapshot could not be checked whole; nothing is known to be damaged; run verify again when the store answers`).MatchString(r.stderr) {
		t.Errorf("verify --read-data against a throttling store does not say what it could not read, and that nothing is known to be damaged:\n%s%s", r.stdout, r.stderr)
	}
	r = slow.run("verify", "--json")
	var doc struct {
		OK     bool `json:"ok"`
		Report struct {
			Problems  []any                            `json:"problems"`
			Damaged   []any                            `json:"damaged_snapshots"`
			Unread    []struct{ Object, Error string } `json:"unread"`
			Unchecked []string                         `json:"unchecked_snapshots"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 1 {
		t.Fatalf("verify --json against a throttling store: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if doc.OK || len(doc.Report.Problems) > 0 || len(doc.Report.Damaged) > 0 || len(doc.Report.Unread) != 1 ||
		!strings.HasPrefix(doc.Report.Unread[0].Object, "data/") || !strings.Contains(doc.Report.Unread[0].Error, "SlowDown") ||
		len(doc.Report.Unchecked) != 1 || doc.Report.Unchecked[0] != snap {
		t.Errorf("verify --json against a throttling store:\n%s", r.stdout)
	}

	// The root tree cannot be read: nothing restored, exit 1.
	r = slow.run("restore", "latest", "--target", filepath.Join(e.dir, "restore"))
	if r.code != 1 || !strings.Contains(r.stderr, "the storage did not answer, so the restore stopped (nothing is known to be damaged") ||
		!strings.Contains(r.stderr, "nothing was restored") {
		t.Errorf("restore against a throttling store, root tree unread: exit %d, want 1 saying the storage did not answer and nothing was restored\n%s%s", r.code, r.stdout, r.stderr)
	}
	notDamage("restore", r)

	// The trees read, the file data does not: exit 1, not 3.
	onlyLarge.Store(true)
	r = slow.run("restore", "latest", "--target", filepath.Join(e.dir, "restore2"))
	if r.code != 1 || !strings.Contains(r.stderr, "the storage did not answer, so the restore stopped") || !strings.Contains(r.stderr, "restore stopped: ") {
		t.Errorf("restore against a throttling store, data unread: exit %d, want 1 (3 means some files were unreadable or damaged)\n%s%s", r.code, r.stdout, r.stderr)
	}
	notDamage("restore", r)

	// The listing of the packs is throttled: verify cannot run on, and
	// says so without calling anything damaged.
	p.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Query().Get("prefix"), "/data/") {
			return false
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
		return true
	})
	r = slow.run("verify")
	if r.code != 1 || !strings.Contains(r.stderr, "listing packs: giving up after") || !strings.Contains(r.stderr, "nothing is known to be damaged; run verify again when the store answers") {
		t.Errorf("verify with the pack listing throttled: exit %d, want 1 saying nothing is known to be damaged\n%s%s", r.code, r.stdout, r.stderr)
	}
	notDamage("verify", r)

	// The store answers again: verify is clean, the restore complete.
	p.Set(nil)
	slow.must("verify", "--read-data")
	slow.must("restore", "latest", "--target", filepath.Join(e.dir, "restore3"))
}

// A store killed in the middle of a restore (hostile-s3 M2: versitygw
// killed mid-restore gave exit 3, "13 of 24 files restored complete")
// fails the restore, exit 1, saying the storage did not answer; once it
// is back, the restore completes.
func TestS3StoreKilledMidRestore(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel()
		srv, _ := s3Env(t, k, map[string]bool{"gone": false})
		e := newEnv(t)
		e.repo = "s3://gone/repo"
		src := filepath.Join(e.dir, "src")
		writeRandomFiles(t, src, 4, 2<<20)
		e.must("init")
		e.must("backup", src)

		// The server dies at the first read of file data (the trees
		// are read by then); the proxy then answers 502 Bad Gateway.
		var once sync.Once
		p := srv.Proxy(t)
		p.Set(func(w http.ResponseWriter, r *http.Request) bool {
			var from, to int64
			if n, _ := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &from, &to); r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/data/") && n == 2 && to-from >= 64<<10 {
				once.Do(func() { srv.Stop(t) })
			}
			return false
		})
		down := *e
		down.extraEnv = append(append([]string{}, e.extraEnv...), "NESTGUARD_S3_ENDPOINT="+p.URL, "AWS_MAX_ATTEMPTS=2")
		r := down.run("restore", "latest", "--target", filepath.Join(e.dir, "restore"))
		if r.code != 1 || !strings.Contains(r.stderr, "the storage did not answer, so the restore stopped (nothing is known to be damaged") {
			t.Errorf("restore from a store killed mid-restore: exit %d, want 1 saying the storage did not answer\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, s := range []string{"is damaged", "damaged snapshot", "files were unreadable", "run 'nestguard verify'", "0 of 0"} {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Errorf("restore from a store killed mid-restore says %q:\n%s%s", s, r.stdout, r.stderr)
			}
		}
		srv.Restart(t)
		p.Set(nil)
		e.must("restore", "latest", "--target", filepath.Join(e.dir, "restore2"))
	})
}
