package miniotest

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// Proxy is a plain-HTTP loopback proxy in front of a server, for tests
// that make the store misbehave: the function given to Set answers the
// requests it picks in the server's stead, and every other request
// reaches the server. The Host header stays the proxy's, which is what
// clients sign.
type Proxy struct {
	// URL is the proxy's address, http://host:port.
	URL string

	rp     *httputil.ReverseProxy
	mu     sync.Mutex
	inject func(w http.ResponseWriter, r *http.Request) bool
}

// Proxy starts a Proxy in front of s, closed when t ends.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	p := &Proxy{rp: httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "https", Host: s.Endpoint})}
	p.rp.Transport = &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.pool},
		Proxy:           nil, // never send loopback traffic to a proxy
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		inject := p.inject
		p.mu.Unlock()
		if inject != nil && inject(w, r) {
			return
		}
		p.Forward(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Set makes inject answer the requests for which it returns true (having
// written the answer); nil lets every request through.
func (p *Proxy) Set(inject func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.inject = inject
	p.mu.Unlock()
}

// Forward passes r to the server and the server's answer to w: for an
// inject function that alters the server's answer rather than replacing it.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request) { p.rp.ServeHTTP(w, r) }

// StallBody answers r as the server does, but sends only the headers and
// the first half of the body, then nothing more until release is closed
// (a store that stops sending mid-answer: a stopped server, a stuck load
// balancer). For an inject function; it always answers r.
func (p *Proxy) StallBody(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
	rec := httptest.NewRecorder()
	p.Forward(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	body := rec.Body.Bytes()
	w.Write(body[:len(body)/2])
	w.(http.Flusher).Flush()
	<-release
}
