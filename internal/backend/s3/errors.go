package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"

	"github.com/minio/minio-go/v7"
)

// opError is an error of one operation on the store. It tells package
// retry whether repeating the operation may help.
type opError struct {
	msg       string
	err       error
	transient bool
}

func (e *opError) Error() string   { return e.msg + ": " + e.err.Error() }
func (e *opError) Unwrap() error   { return e.err }
func (e *opError) Transient() bool { return e.transient }

// wrap describes err, a failure of the operation named by format and
// args, and classifies it. Missing objects wrap fs.ErrNotExist, failed
// preconditions fs.ErrExist, and refusals of access fs.ErrPermission.
func (b *Backend) wrap(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...) + " (" + b.location + ")"
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) || resp.StatusCode == 0 {
		return &opError{msg: msg, err: err, transient: networkTransient(err)}
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && resp.Code == "NoSuchBucket":
		return &opError{msg: msg, err: fmt.Errorf("bucket %q does not exist: %w", b.bucket, err)}
	case resp.StatusCode == http.StatusNotFound:
		return &opError{msg: msg, err: fmt.Errorf("%w (%v)", fs.ErrNotExist, err)}
	case resp.StatusCode == http.StatusPreconditionFailed:
		return &opError{msg: msg, err: fmt.Errorf("%w (%v)", fs.ErrExist, err)}
	case resp.StatusCode == http.StatusForbidden:
		return &opError{msg: msg, err: fmt.Errorf("%w: check the credentials and the bucket policy (%v)", fs.ErrPermission, err)}
	}
	return &opError{msg: msg, err: err, transient: statusTransient(resp)}
}

// statusTransient reports whether an S3 error response is worth repeating:
// server errors, throttling, and request timeouts.
func statusTransient(resp minio.ErrorResponse) bool {
	switch resp.Code {
	case "SlowDown", "SlowDownRead", "SlowDownWrite", "Throttling", "ThrottlingException",
		"RequestLimitExceeded", "RequestThrottled", "RequestTimeout", "InternalError",
		"ServiceUnavailable", "ExpiredToken", "ExpiredTokenException",
		"ConditionalRequestConflict": // a racing conditional write; repeating gets 412 or success
		return true
	}
	return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
}

// networkTransient classifies a failure below HTTP: dropped and refused
// connections and timeouts are transient; certificate problems, unknown
// hosts and cancellation are not.
func networkTransient(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		alert     tls.AlertError
		record    tls.RecordHeaderError
		dns       *net.DNSError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &hostname),
		errors.As(err, &alert), errors.As(err, &record):
		return false
	case errors.As(err, &dns):
		return !dns.IsNotFound
	}
	return true
}
