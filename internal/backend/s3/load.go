package s3

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nestguard/nestguard/internal/backend"
)

// Load implements backend.Backend with a ranged GET. A range the object
// does not cover fails with io.ErrUnexpectedEOF; a connection that breaks
// mid-body fails with a transient error, so package retry resumes it.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	key, err := b.key(h)
	if err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("loading %s: invalid range offset %d length %d", h, offset, length)
	}
	in := &awss3.GetObjectInput{Bucket: &b.bucket, Key: &key}
	switch {
	case length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	var body io.ReadCloser
	err = b.withVersion(ctx, key, func(version string) error {
		in.VersionId = optional(version)
		out, err := b.client.GetObject(ctx, in)
		if err != nil {
			return err
		}
		body = out.Body
		return nil
	})
	if err != nil {
		if statusOf(err) == http.StatusRequestedRangeNotSatisfiable {
			return b.outOfRange(ctx, h, offset, length)
		}
		return nil, b.denied(err, b.readAction(), h, key, "loading %s", h)
	}
	return &bodyReader{b: b, h: h, body: body, offset: offset, left: length, exact: length > 0}, nil
}

// outOfRange handles a range starting at or past the end of the object:
// reading "to the end" from exactly the end is empty, anything else is
// short.
func (b *Backend) outOfRange(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	fi, err := b.Stat(ctx, h)
	if err != nil {
		return nil, err
	}
	if length == 0 && offset == fi.Size {
		return io.NopCloser(http.NoBody), nil
	}
	return nil, fmt.Errorf("loading %s: the object is %d bytes, the range at offset %d runs past its end: %w", h, fi.Size, offset, io.ErrUnexpectedEOF)
}

// bodyReader passes an object's body on and tells a short object
// (permanent: io.ErrUnexpectedEOF) from a broken connection (transient).
type bodyReader struct {
	b      *Backend
	h      backend.Handle
	body   io.ReadCloser
	offset int64 // of the next byte
	left   int64 // bytes still expected, if exact
	exact  bool
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.exact && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	if r.exact && r.left == 0 {
		return 0, io.EOF
	}
	n, err := r.body.Read(p)
	r.offset += int64(n)
	r.left -= int64(n)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF && r.exact && r.left > 0:
		// The server ended the body cleanly: the object is shorter.
		return n, fmt.Errorf("loading %s: the object ends at offset %d, before the end of the range: %w", r.h, r.offset, io.ErrUnexpectedEOF)
	case err == io.EOF:
		return n, io.EOF
	}
	// Anything else, io.ErrUnexpectedEOF from a body cut short of its
	// Content-Length included, is the connection failing; a store that
	// stopped sending fails after the idle timeout (idleTransport).
	if ie, ok := isIdle(err); ok {
		return n, &opError{msg: fmt.Sprintf("loading %s at offset %d (%s)", r.h, r.offset, r.b.location), err: ie, transient: true}
	}
	return n, &opError{msg: fmt.Sprintf("loading %s at offset %d (%s)", r.h, r.offset, r.b.location), err: err, transient: networkTransient(err)}
}

func (r *bodyReader) Close() error { return r.body.Close() }
