package main

// Storage faults that must end a command in bounded time with a message
// that says what is wrong (found by the hostile-storage review).

import (
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
		rec := httptest.NewRecorder()
		p.Forward(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		body := rec.Body.Bytes()
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		stalled.Add(1)
		<-release // the rest never comes
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
