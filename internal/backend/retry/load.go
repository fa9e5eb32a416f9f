package retry

import (
	"context"
	"fmt"
	"io"

	"github.com/nestguard/nestguard/internal/backend"
)

// Load implements backend.Backend. Opening is retried like every other
// operation, and so is reading: when the connection breaks mid-body, the
// returned reader loads the rest of the range again from where it
// stopped, within the same attempt limit.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	r := &resumingReader{
		b: b, ctx: ctx, h: h, what: "loading " + h.String(),
		offset: offset, left: length, toEnd: length == 0,
		bg: newBudget(),
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// resumingReader reads h[offset, offset+left) (to the end with toEnd) and
// reopens the rest of the range after a transient read error.
type resumingReader struct {
	b      *Backend
	ctx    context.Context
	h      backend.Handle
	what   string
	offset int64 // of the next byte to deliver
	left   int64 // bytes still to deliver, unless toEnd
	toEnd  bool
	bg     *budget
	rc     io.ReadCloser
	broken error // a transient read error not yet acted on
}

func (r *resumingReader) open() error {
	return r.b.run(r.ctx, r.what, r.bg, func() error {
		length := r.left
		if r.toEnd {
			length = 0
		}
		rc, err := r.b.be.Load(r.ctx, r.h, r.offset, length)
		if err != nil {
			return err
		}
		r.rc = rc
		return nil
	})
}

func (r *resumingReader) Read(p []byte) (int, error) {
	if r.broken != nil {
		err := r.broken
		r.broken = nil
		if err := r.b.pause(r.ctx, r.what, r.bg, err); err != nil {
			return 0, err
		}
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.rc == nil {
		return 0, fmt.Errorf("%s: read after Close", r.what)
	}
	if !r.toEnd {
		if r.left == 0 {
			return 0, io.EOF
		}
		if int64(len(p)) > r.left {
			p = p[:r.left]
		}
	}
	n, err := r.rc.Read(p)
	r.offset += int64(n)
	r.left -= int64(n)
	if n > 0 {
		r.bg.moved()
	}
	if err == nil || err == io.EOF || !IsTransient(err) || r.ctx.Err() != nil {
		return n, err
	}
	// The connection broke: drop it, deliver what arrived, and reopen the
	// rest on the next Read (which also applies the backoff).
	r.rc.Close()
	r.rc = nil
	r.broken = err
	if n > 0 {
		return n, nil
	}
	return r.Read(p)
}

func (r *resumingReader) Close() error {
	r.broken = nil
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}
