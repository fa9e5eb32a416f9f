package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/retry"
	"github.com/nestguard/nestguard/internal/miniotest"
)

const testIdle = 500 * time.Millisecond

func idleClient() *http.Client {
	return &http.Client{Transport: idleTransport{base: http.DefaultTransport.(*http.Transport).Clone(), d: testIdle}}
}

// A store that stops sending in the middle of a body, or never answers,
// fails the request after the idle timeout with a timeout error naming
// the store; one that keeps sending slowly, or a caller that takes its
// time between reads, is never cut.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stall-body":
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("hello"))
			w.(http.Flusher).Flush()
			<-release
		case "/stall-headers":
			<-release
		case "/slow":
			// 10 bytes over 4 idle timeouts, never silent for one.
			w.Header().Set("Content-Length", "10")
			for range 10 {
				w.Write([]byte("x"))
				w.(http.Flusher).Flush()
				time.Sleep(testIdle * 4 / 10)
			}
		case "/no-read":
			<-release // never reads the upload
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before the server closes
	host := strings.TrimPrefix(srv.URL, "http://")
	c := idleClient()

	wantIdle := func(what string, err error, start time.Time) {
		t.Helper()
		var ie *idleError
		var ne interface{ Timeout() bool }
		if !errors.As(err, &ie) || !errors.As(err, &ne) || !ne.Timeout() || !strings.Contains(err.Error(), "the storage at "+host+" did not answer within") {
			t.Errorf("%s: %v, want the idle timeout naming %s", what, err, host)
		}
		if d := time.Since(start); d > 10*testIdle {
			t.Errorf("%s: failed after %v, want about %v", what, d, testIdle)
		}
	}

	start := time.Now()
	resp, err := c.Get(srv.URL + "/stall-body")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "hello" {
		t.Errorf("stalled body: read %q before the stall, want hello", got)
	}
	wantIdle("a body that stops", err, start)

	start = time.Now()
	_, err = c.Get(srv.URL + "/stall-headers")
	wantIdle("no answer", err, start)

	start = time.Now()
	_, err = c.Post(srv.URL+"/no-read", "application/octet-stream", bytes.NewReader(make([]byte, 64<<20)))
	wantIdle("an upload the store does not take", err, start)

	resp, err = c.Get(srv.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(got) != 10 {
		t.Errorf("a slow body that keeps coming: %d bytes, %v; want all 10", len(got), err)
	}

	// The caller's own pauses between reads are not the store's silence.
	resp, err = c.Get(srv.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := resp.Body.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * testIdle)
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(rest) != 9 {
		t.Errorf("reading on after a pause of the caller's: %d bytes, %v; want the other 9", len(rest), err)
	}
}

// A GET whose body stops part-way fails as transient after the idle
// timeout, naming the store, and package retry resumes it from the byte
// it reached; a store that stops every time fails the load in bounded
// time.
func TestStalledBodyResumes(t *testing.T) {
	t.Parallel()
	s := startServer(t, miniotest.MinIO)
	fp := s.Proxy(t)
	cfg := s.config(plainBucket)
	cfg.Endpoint, cfg.Secure, cfg.CACertFile = strings.TrimPrefix(fp.URL, "http://"), false, ""
	cfg.IdleTimeout = 2 * testIdle // MinIO on a busy machine answers well within
	be, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	h := backend.Handle{Type: backend.PackFile, Name: strings.Repeat("ab", 32)}
	mustSave(t, be, h, data)

	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var stalls atomic.Int64
	stallLeft := atomic.Int64{}
	fp.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/data/") || stallLeft.Add(-1) < 0 {
			return false
		}
		stalls.Add(1)
		fp.StallBody(w, r, release) // the rest never comes
		return true
	})

	rb := retry.New(be, retry.Options{Base: time.Millisecond, Max: time.Millisecond})
	stallLeft.Store(1)
	rc, err := rb.Load(ctx, h, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) || stalls.Load() != 1 {
		t.Errorf("load stalled once: %d of %d bytes, %v, %d stalls; want all, resumed after 1 stall", len(got), len(data), err, stalls.Load())
	}

	stallLeft.Store(1 << 30)
	start := time.Now()
	rc, err = rb.Load(ctx, h, 0, 0)
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "did not answer within") || !strings.Contains(err.Error(), "giving up after 6 attempts") {
		t.Errorf("load from a store that always stalls: %v, want giving up, naming the silent store", err)
	}
	if d := time.Since(start); d > 6*3*testIdle {
		t.Errorf("load from a store that always stalls took %v", d)
	}
}

// A PUT the store takes and never answers fails after the idle timeout
// of each attempt, with the SDK adding no attempts of its own to package
// retry's, and a final message that says the store did not answer.
func TestSilentStoreSave(t *testing.T) {
	t.Parallel()
	s := startServer(t, miniotest.MinIO)
	fp := s.Proxy(t)
	cfg := s.config(plainBucket)
	cfg.Endpoint, cfg.Secure, cfg.CACertFile = strings.TrimPrefix(fp.URL, "http://"), false, ""
	cfg.IdleTimeout = 2 * testIdle
	be, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var puts atomic.Int64
	fp.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut {
			return false
		}
		puts.Add(1)
		io.Copy(io.Discard, r.Body)
		<-release // never answers
		return true
	})
	const attempts = 3
	rb := retry.New(be, retry.Options{Attempts: attempts, Base: time.Millisecond, Max: time.Millisecond})
	data := []byte("a WAL segment")
	start := time.Now()
	err = rb.Save(context.Background(), backend.Handle{Type: backend.IndexFile, Name: "silent"}, bytes.NewReader(data), int64(len(data)))
	host := strings.TrimPrefix(fp.URL, "http://")
	if err == nil || !strings.Contains(err.Error(), "the storage at "+host+" did not answer within 1s; check it and run the command again") {
		t.Errorf("Save to a store that never answers: %v, want the store named as not answering", err)
	}
	if strings.Contains(fmt.Sprint(err), "StatusCode: 0") {
		t.Errorf("the message carries the SDK's chain: %v", err)
	}
	if n := puts.Load(); n != attempts {
		t.Errorf("%d PUTs for %d attempts: the SDK repeats timed-out requests itself", n, attempts)
	}
	if d := time.Since(start); d > attempts*2*2*testIdle {
		t.Errorf("Save to a store that never answers took %v", d)
	}
}
