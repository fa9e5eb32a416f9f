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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

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

// An answer to an Object Lock request that is not S3's (a proxy's web
// page, an empty body, garbage XML, an unknown mode or status, a date that
// does not parse, an unexpected error) is an error naming the object, never
// "not retained": callers decide from it what may be deleted. Only S3's
// own "no retention" error means none.
func TestForeignLockAnswers(t *testing.T) {
	t.Parallel()
	const xmlHead = `<?xml version="1.0" encoding="UTF-8"?>`
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		ctx := context.Background()
		be, fp := s.proxiedBackend(t, lockedBucket)
		h := backend.Handle{Type: backend.SnapshotFile, Name: fmt.Sprintf("%064x", 1)}
		mustSave(t, be, h, []byte("snapshot"))
		key, _ := be.key(h)

		// The servers' own answer for an object without retention or hold.
		if r, err := be.Retention(ctx, h); err != nil || r != (backend.Retention{}) {
			t.Fatalf("Retention of an object without any: %+v, %v; want none", r, err)
		}

		answer := func(query string, status int, contentType, body string) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodGet || !r.URL.Query().Has(query) {
					return false
				}
				w.Header().Set("Content-Type", contentType)
				w.WriteHeader(status)
				io.WriteString(w, body)
				return true
			}
		}
		const html = "<html><body><h1>Please log in</h1></body></html>"
		for _, c := range []struct {
			name   string
			inject func(http.ResponseWriter, *http.Request) bool
			want   string // in the error
		}{
			{"html", answer("retention", 200, "text/html", html), "no mode"},
			{"empty", answer("retention", 200, "application/xml", ""), "no retention document"},
			{"text", answer("retention", 200, "text/plain", "OK"), "no retention document"},
			{"other document", answer("retention", 200, "application/xml", xmlHead+`<LegalHold><Status>OFF</Status></LegalHold>`), "no mode"},
			{"broken xml", answer("retention", 200, "application/xml", xmlHead+`<Retention><Mode>COMPLIANCE</Retention>`), "not an S3 Object Lock document"},
			{"unknown mode", answer("retention", 200, "application/xml", xmlHead+`<Retention><Mode>FOREVER</Mode><RetainUntilDate>2032-11-25T02:51:56Z</RetainUntilDate></Retention>`), `unknown mode "FOREVER"`},
			{"no date", answer("retention", 200, "application/xml", xmlHead+`<Retention><Mode>COMPLIANCE</Mode></Retention>`), "no retain-until date"},
			{"bad date", answer("retention", 200, "application/xml", xmlHead+`<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>next year</RetainUntilDate></Retention>`), "next year"},
			{"other error", answer("retention", 400, "application/xml", xmlHead+`<Error><Code>InvalidRequest</Code><Message>injected</Message></Error>`), "InvalidRequest"},
			{"hold html", answer("legal-hold", 200, "text/html", html), "no legal hold status"},
			{"hold unknown", answer("legal-hold", 200, "application/xml", xmlHead+`<LegalHold><Status>MAYBE</Status></LegalHold>`), `unknown status "MAYBE"`},
		} {
			t.Run(c.name, func(t *testing.T) {
				fp.Set(c.inject)
				defer fp.Set(nil)
				r, err := be.Retention(ctx, h)
				if err == nil || retry.IsTransient(err) || !strings.Contains(err.Error(), h.String()) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("Retention: %+v, %v (transient %v); want a permanent error naming %s and saying %q", r, err, retry.IsTransient(err), h, c.want)
				}
				// Remove does not take the unknown for unlocked.
				if err := be.Remove(ctx, h); err == nil || !strings.Contains(err.Error(), h.String()) {
					t.Errorf("Remove with the retention unreadable: %v, want an error naming %s", err, h)
				}
				if !strings.Contains(c.name, "hold") {
					err := be.SetRetention(ctx, h, backend.Governance, time.Now().Add(time.Hour))
					if err == nil || retry.IsTransient(err) {
						t.Errorf("SetRetention with the retention unreadable: %v (transient %v), want a permanent error", err, retry.IsTransient(err))
					}
				}
			})
		}
		if _, err := s.Client(t).HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(lockedBucket), Key: &key}); err != nil {
			t.Errorf("the object is gone after Removes that could not read its retention: %v", err)
		}

		// The bucket's configuration: a foreign answer is not "no Object
		// Lock" either.
		for name, body := range map[string]string{
			"html":     html,
			"disabled": xmlHead + `<ObjectLockConfiguration><ObjectLockEnabled>Disabled</ObjectLockEnabled></ObjectLockConfiguration>`,
		} {
			fresh, fp := s.proxiedBackend(t, lockedBucket)
			fp.Set(answer("object-lock", 200, "text/html", body))
			on, err := fresh.LockEnabled(ctx)
			if err == nil || retry.IsTransient(err) {
				t.Errorf("LockEnabled answered %s: %v, %v (transient %v); want a permanent error", name, on, err, retry.IsTransient(err))
			}
			if _, err := fresh.Retention(ctx, h); err == nil {
				t.Errorf("Retention with the bucket's configuration answered %s: no error", name)
			}
		}
	})
}
