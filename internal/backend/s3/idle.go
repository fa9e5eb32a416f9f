package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultIdleTimeout is how long a request may wait for the store without
// progress before it fails as transient: no connection, no byte of the
// answer, or no room to send the next bytes of an upload. It bounds
// silence, not the time of a transfer: a large upload or download that
// keeps moving is never cut.
const DefaultIdleTimeout = 30 * time.Second

// idleError is a request the store let sit without progress for longer
// than the idle timeout. It is a timeout (net.Error), so transient, and
// its text is what the final message of a command says.
type idleError struct {
	host string
	d    time.Duration
}

func (e *idleError) Error() string {
	return fmt.Sprintf("the storage at %s did not answer within %v; check it and run the command again", e.host, e.d)
}
func (e *idleError) Timeout() bool   { return true }
func (e *idleError) Temporary() bool { return true }

// idleTransport fails a request, as an idleError, once it waits for the
// store for longer than d without progress: while connecting, while the
// store does not read more of the request body (the transport does not
// ask for more of it), while waiting for the answer's headers, and
// during any one Read of the answer's body. Time spent by the caller
// between reads of the answer, or by the request body's source in its
// own Read, does not count.
type idleTransport struct {
	base http.RoundTripper
	d    time.Duration
}

func (t idleTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{d: t.d, err: &idleError{host: req.URL.Host, d: t.d}}
	w.t = time.AfterFunc(t.d, func() { cancel(w.err) })
	w.sending = true
	r := req.Clone(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		r.Body = &idleRequestBody{ReadCloser: req.Body, w: w}
	}
	resp, err := t.base.RoundTrip(r)
	w.mu.Lock()
	w.sending = false
	w.t.Stop()
	w.mu.Unlock()
	if err != nil {
		cancel(nil)
		if context.Cause(ctx) == w.err {
			return nil, w.err
		}
		return nil, err
	}
	resp.Body = &idleResponseBody{body: resp.Body, w: w, ctx: ctx, cancel: cancel}
	return resp, nil
}

// watchdog cancels a request's context with err when its timer fires.
type watchdog struct {
	d   time.Duration
	err *idleError
	t   *time.Timer

	mu      sync.Mutex
	sending bool // the request is being sent and its answer awaited
}

// idleRequestBody stops the clock while the source reads (a slow disk is
// not a silent store) and restarts it while the transport sends.
type idleRequestBody struct {
	io.ReadCloser
	w *watchdog
}

func (b *idleRequestBody) Read(p []byte) (int, error) {
	b.w.mu.Lock()
	if b.w.sending {
		b.w.t.Stop()
	}
	b.w.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	b.w.mu.Lock()
	if b.w.sending {
		b.w.t.Reset(b.w.d)
	}
	b.w.mu.Unlock()
	return n, err
}

// idleResponseBody runs the clock during each Read.
type idleResponseBody struct {
	body   io.ReadCloser
	w      *watchdog
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (b *idleResponseBody) Read(p []byte) (int, error) {
	b.w.t.Reset(b.w.d)
	n, err := b.body.Read(p)
	b.w.t.Stop()
	if err != nil && err != io.EOF && context.Cause(b.ctx) == b.w.err {
		return n, b.w.err
	}
	return n, err
}

func (b *idleResponseBody) Close() error {
	b.w.t.Stop()
	err := b.body.Close()
	b.cancel(nil)
	return err
}

// isIdle reports whether err is a request that the store left waiting,
// and returns it.
func isIdle(err error) (*idleError, bool) {
	var ie *idleError
	return ie, errors.As(err, &ie)
}
