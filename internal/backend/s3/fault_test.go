package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/retry"
	"github.com/nestguard/nestguard/internal/miniotest"
)

// cutWriter passes the first half of an answer's body on, then drops the
// connection: the client sees a body shorter than its Content-Length.
type cutWriter struct {
	http.ResponseWriter
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *cutWriter) Header() http.Header         { return c.header }
func (c *cutWriter) WriteHeader(status int)      { c.status = status }
func (c *cutWriter) Write(p []byte) (int, error) { return c.body.Write(p) }

func (c *cutWriter) cut() {
	for k, v := range c.header {
		c.ResponseWriter.Header()[k] = v
	}
	c.ResponseWriter.Header().Set("Content-Length", fmt.Sprint(c.body.Len()))
	c.ResponseWriter.WriteHeader(c.status)
	c.ResponseWriter.Write(c.body.Bytes()[:c.body.Len()/2])
	c.ResponseWriter.(http.Flusher).Flush()
	if conn, _, err := c.ResponseWriter.(http.Hijacker).Hijack(); err == nil {
		conn.Close()
	}
}

func (s *testServer) proxiedBackend(t *testing.T, bucket string) (*Backend, *miniotest.Proxy) {
	t.Helper()
	fp := s.Proxy(t)
	ep := strings.TrimPrefix(fp.URL, "http://")
	cfg := s.config(bucket)
	cfg.Endpoint, cfg.Secure, cfg.CACertFile = ep, false, ""
	be, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return be, fp
}

// Errors of the store are classified through the SDK as package retry
// needs them, over plain HTTP as over TLS.
func TestFaults(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		ctx := context.Background()
		for _, bucket := range []string{plainBucket, lockedBucket} {
			t.Run(bucket, func(t *testing.T) {
				be, fp := s.proxiedBackend(t, bucket)
				data := bytes.Repeat([]byte("plain http "), 1000)
				h := backend.Handle{Type: backend.IndexFile, Name: "http"}
				mustSave(t, be, h, data)
				if got := mustLoad(t, be, h); !bytes.Equal(got, data) {
					t.Fatal("plain HTTP round trip reads back wrong")
				}
				for _, c := range []struct {
					status    int
					code      string
					transient bool
					is        error
				}{
					{503, "SlowDown", true, nil},
					{500, "InternalError", true, nil},
					{429, "TooManyRequests", true, nil},
					{409, "ConditionalRequestConflict", true, nil},
					{412, "PreconditionFailed", false, fs.ErrExist},
					{403, "AccessDenied", false, fs.ErrPermission},
					{400, "BadDigest", false, nil},
					// A store without conditional writes: repeating cannot help.
					{501, "NotImplemented", false, nil},
					// AWS: "a conflicting conditional operation is currently in
					// progress against this resource. Try again."
					{409, "OperationAborted", true, nil},
				} {
					fp.Set(func(w http.ResponseWriter, r *http.Request) bool {
						if r.Method != http.MethodPut {
							return false
						}
						io.Copy(io.Discard, r.Body)
						w.Header().Set("Content-Type", "application/xml")
						w.WriteHeader(c.status)
						fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, c.code)
						return true
					})
					h := backend.Handle{Type: backend.IndexFile, Name: fmt.Sprintf("failed-%d", c.status)}
					err := be.Save(ctx, h, bytes.NewReader(data), int64(len(data)))
					fp.Set(nil)
					if err == nil || retry.IsTransient(err) != c.transient || c.is != nil && !errors.Is(err, c.is) {
						t.Errorf("Save answered %d %s: %v (transient %v), want transient %v, is %v", c.status, c.code, err, retry.IsTransient(err), c.transient, c.is)
					}
					if strings.Contains(fmt.Sprint(err), s.SecretKey) {
						t.Errorf("an error shows the secret key: %v", err)
					}
					if _, err := be.Stat(ctx, h); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("Save answered %d %s stored the object: %v", c.status, c.code, err)
					}
				}

				// A listing's answer cut short by the connection is worth
				// repeating, as any dropped connection.
				for i := range 3 {
					mustSave(t, be, backend.Handle{Type: backend.SnapshotFile, Name: fmt.Sprintf("%064x", i)}, []byte("s"))
				}
				fp.Set(func(w http.ResponseWriter, r *http.Request) bool {
					q := r.URL.Query()
					if r.Method != http.MethodGet || !q.Has("versions") && q.Get("list-type") != "2" {
						return false
					}
					cw := &cutWriter{ResponseWriter: w, header: http.Header{}, status: http.StatusOK}
					fp.Forward(cw, r)
					cw.cut()
					return true
				})
				err := be.List(ctx, backend.SnapshotFile, func(backend.FileInfo) error { return nil })
				fp.Set(nil)
				if err == nil || !retry.IsTransient(err) {
					t.Errorf("List with its answer cut short: %v (transient %v), want a transient error", err, retry.IsTransient(err))
				}

				// An answer that is XML but no listing (a proxy's page) is
				// an error, not an empty listing, and is not repeated.
				fp.Set(func(w http.ResponseWriter, r *http.Request) bool {
					q := r.URL.Query()
					if r.Method != http.MethodGet || !q.Has("versions") && q.Get("list-type") != "2" {
						return false
					}
					w.Header().Set("Content-Type", "text/html")
					io.WriteString(w, "<html><body>Please log in</body></html>")
					return true
				})
				err = be.List(ctx, backend.SnapshotFile, func(backend.FileInfo) error { return nil })
				fp.Set(nil)
				if err == nil || retry.IsTransient(err) {
					t.Errorf("List answered with a web page: %v (transient %v), want a permanent error", err, retry.IsTransient(err))
				}

			})
		}
	})
}

// A region that is not the bucket's is named in the error, with the
// bucket's, when the store says which it is.
func TestWrongRegion(t *testing.T) {
	t.Parallel()
	s := startServer(t, miniotest.MinIO)
	fp := s.Proxy(t)
	ep := strings.TrimPrefix(fp.URL, "http://")
	fp.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodHead || strings.Trim(r.URL.Path, "/") != plainBucket {
			return false
		}
		// What AWS and MinIO answer a HEAD signed for another region.
		w.Header().Set("X-Amz-Bucket-Region", "eu-west-3")
		w.WriteHeader(http.StatusBadRequest)
		return true
	})
	cfg := s.config(plainBucket)
	cfg.Endpoint, cfg.Secure, cfg.CACertFile = ep, false, ""
	cfg.Region = "us-west-2"
	_, err := New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), `"eu-west-3"`) || !strings.Contains(err.Error(), `"us-west-2"`) || retry.IsTransient(err) {
		t.Errorf("New with the wrong region: %v (transient %v), want an error naming both regions", err, retry.IsTransient(err))
	}
}
