package main

// Storage faults that must end a command in bounded time with a message
// that says what is wrong (found by the hostile-storage review).

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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
