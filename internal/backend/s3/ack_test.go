package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/retry"
	"github.com/nestguard/nestguard/internal/miniotest"
)

var checksumXML = regexp.MustCompile(`<ChecksumCRC32C>[^<]*</ChecksumCRC32C>`)

// An upload the store acknowledges without storing what was sent is an
// error, not retried: a 200 for a body that was dropped, a checksum
// echoed that is not the one sent. A store that does not echo the
// checksum is still written to (the object is checked to be there), and
// the echoes of both servers, single and multipart, match what was sent.
func TestAcknowledgedNotStored(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		ctx := context.Background()
		fp := s.Proxy(t)
		cfg := s.config(plainBucket)
		cfg.Endpoint, cfg.Secure, cfg.CACertFile = strings.TrimPrefix(fp.URL, "http://"), false, ""
		cfg.PartSize = minPartSize
		be, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		small := bytes.Repeat([]byte("pack "), 1000)
		large := bytes.Repeat([]byte("large pack "), (2*minPartSize+minPartSize/2)/11) // 3 parts
		n := 0
		save := func(data []byte) (backend.Handle, error) {
			n++
			h := backend.Handle{Type: backend.PackFile, Name: fmt.Sprintf("%064x", n)}
			return h, retry.New(be, retry.Options{Base: 1, Max: 1}).Save(ctx, h, bytes.NewReader(data), int64(len(data)))
		}

		// Honest, echoing stores.
		for _, data := range [][]byte{small, large} {
			h, err := save(data)
			if err != nil {
				t.Fatalf("Save of %d bytes: %v", len(data), err)
			}
			if got := mustLoad(t, be, h); !bytes.Equal(got, data) {
				t.Fatalf("Save of %d bytes reads back wrong", len(data))
			}
		}

		// rewrite forwards uploads and changes the answer's headers.
		rewrite := func(change func(http.Header)) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPut && r.Method != http.MethodPost {
					return false
				}
				rec := httptest.NewRecorder()
				fp.Forward(rec, r)
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				change(w.Header())
				if w.Header().Get("X-Amz-Checksum-Crc32c") == "" {
					w.Header().Del("Content-Length")
				}
				w.WriteHeader(rec.Code)
				body := rec.Body.Bytes()
				if w.Header().Get("X-Amz-Checksum-Crc32c") == "" {
					// A store that echoes no checksum: none in the
					// completion's XML answer either.
					body = checksumXML.ReplaceAll(body, nil)
				}
				w.Write(body)
				return true
			}
		}
		for _, c := range []struct {
			name   string
			inject func(http.ResponseWriter, *http.Request) bool
			data   []byte
			want   string // "" for success
		}{
			{"dropped", func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPut {
					return false
				}
				io.Copy(io.Discard, r.Body)
				w.Header().Set("ETag", `"d41d8cd98f00b204e9800998ecf8427e"`)
				w.WriteHeader(http.StatusOK)
				return true
			}, small, "the object is not there after its upload"},
			{"other checksum", rewrite(func(h http.Header) { h.Set("X-Amz-Checksum-Crc32c", "AAAAAA==") }), small, "the store answered AAAAAA=="},
			{"other part checksum", rewrite(func(h http.Header) {
				if h.Get("X-Amz-Checksum-Crc32c") != "" {
					h.Set("X-Amz-Checksum-Crc32c", "AAAAAA==")
				}
			}), large, "part 1 of 3"},
			{"no echo", rewrite(func(h http.Header) { h.Del("X-Amz-Checksum-Crc32c") }), small, ""},
			{"no echo multipart", rewrite(func(h http.Header) { h.Del("X-Amz-Checksum-Crc32c") }), large, ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				fp.Set(c.inject)
				h, err := save(c.data)
				fp.Set(nil)
				if c.want == "" {
					if err != nil {
						t.Fatalf("Save: %v", err)
					}
					if got := mustLoad(t, be, h); !bytes.Equal(got, c.data) {
						t.Fatal("reads back wrong")
					}
					return
				}
				if err == nil || !errors.Is(err, errNotStored) || !strings.Contains(err.Error(), c.want) || retry.IsTransient(err) || errors.Is(err, fs.ErrExist) {
					t.Errorf("Save: %v (transient %v), want a permanent error saying %q", err, retry.IsTransient(err), c.want)
				}
			})
		}
	})
}
