package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
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
	if ie, ok := isIdle(err); ok {
		// The SDK's chain around it ("https response error StatusCode:
		// 0, RequestID: , ...") says nothing more.
		return &opError{msg: msg, err: ie, transient: true}
	}
	resp, ok := responseOf(err)
	if !ok {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotListing) || errors.Is(err, errNotLockAnswer) || errors.Is(err, errNotStored) { // version found none; a foreign answer; a lost upload
			return &opError{msg: msg, err: err}
		}
		return &opError{msg: msg, err: err, transient: networkTransient(err)}
	}
	switch {
	case resp.status == http.StatusNotFound && resp.code == "NoSuchBucket":
		return &opError{msg: msg, err: fmt.Errorf("bucket %q does not exist: %w", b.bucket, err)}
	case resp.status == http.StatusNotFound:
		return &opError{msg: msg, err: fmt.Errorf("%w (%v)", fs.ErrNotExist, err)}
	case resp.status == http.StatusPreconditionFailed:
		return &opError{msg: msg, err: fmt.Errorf("%w (%v)", fs.ErrExist, err)}
	case resp.status == http.StatusForbidden:
		if skew := clockSkew(err, time.Now()); skew != "" {
			return &opError{msg: msg, err: fmt.Errorf("%w: %s (%v)", fs.ErrPermission, skew, err)}
		}
		return &opError{msg: msg, err: fmt.Errorf("%w: check the credentials%s and the bucket policy (%v)", fs.ErrPermission, b.credentials(), err)}
	case resp.status == http.StatusBadRequest && strings.Contains(err.Error(), "ObjectLockConfiguration"):
		// The repository asks for retention the bucket cannot give (its
		// objects copied to a bucket made without Object Lock; found by
		// a hostile test: the SDK's words only).
		return &opError{msg: msg, err: fmt.Errorf("bucket %q has no Object Lock, and this repository's config sets write-once retention: keep the repository in a bucket created with Object Lock enabled (copy its objects to one, or 'nestguard copy' it there): %w", b.bucket, err)}
	}
	return &opError{msg: msg, err: err, transient: statusTransient(resp)}
}

// credentials names the credentials requests are signed with, for a
// refusal's message: " (profile "x" (--s3-profile), access key ID
// ****ABCD)", "" if not known.
func (b *Backend) credentials() string {
	if b.identity == "" {
		return ""
	}
	return " (" + b.identity + ")"
}

// maxSkew is how far the store's clock (its answer's Date) may be from
// this machine's before a refusal is put down to the clocks: S3 refuses a
// request signed more than 15 minutes off its own time
// (RequestTimeTooSkewed), and a HEAD answer, having no body, does not
// say that is why.
const maxSkew = 5 * time.Minute

// clockSkew says, for a refusal (403) err answered at now, that the
// clocks differ and by how much, when the answer's Date is more than
// maxSkew from now, or its code is RequestTimeTooSkewed; "" otherwise.
func clockSkew(err error, now time.Time) string {
	var re *awshttp.ResponseError
	var at time.Time
	if errors.As(err, &re) && re.Response != nil {
		at, _ = http.ParseTime(re.Response.Header.Get("Date"))
	}
	d := at.Sub(now)
	tooSkewed := errorCode(err) == "RequestTimeTooSkewed"
	switch {
	case !at.IsZero() && d.Abs() > maxSkew:
		way := "behind"
		if d < 0 {
			way = "ahead of"
		}
		return fmt.Sprintf("this machine's clock is about %v %s the store's (the Date of its answer: %s): S3 refuses requests signed more than 15 minutes off its own time (RequestTimeTooSkewed); set this machine's clock right (NTP) and run the command again", d.Abs().Round(time.Minute), way, at.UTC().Format(time.RFC3339))
	case tooSkewed:
		return "the store says this machine's clock is too far from its own (RequestTimeTooSkewed): set this machine's clock right (NTP) and run the command again"
	}
	return ""
}

// response is what an S3 error answer says: its HTTP status and error
// code (a HEAD answer has no body, and its code names the status).
type response struct {
	status int
	code   string
}

// responseOf returns the S3 answer err reports, if it is one: false for
// failures below HTTP, and for a successful answer that could not be read
// (its body cut short by the connection, or not parsed), which the SDK
// reports with the answer's 2xx status.
func responseOf(err error) (response, bool) {
	var re *awshttp.ResponseError
	if err == nil || !errors.As(err, &re) || re.HTTPStatusCode() < 300 {
		return response{}, false
	}
	r := response{status: re.HTTPStatusCode()}
	var api smithy.APIError
	if errors.As(err, &api) {
		r.code = api.ErrorCode()
	}
	return r, true
}

// errNotLockAnswer is an answer to an Object Lock request (a retention,
// a legal hold, the bucket's configuration) that says nothing S3 would:
// not the document asked for (a proxy's web page, an empty body), an
// unknown mode or status, a date that does not parse. It is never read
// as "no lock": what cannot be read might be locked.
var errNotLockAnswer = errors.New("the answer is not an S3 Object Lock document")

// unreadableAnswer reports whether err is a successful (2xx) answer whose
// body the SDK could not parse, the connection not being at fault: the
// server answered something else than S3 does, and will again.
func unreadableAnswer(err error) bool {
	var (
		re *awshttp.ResponseError
		de *smithy.DeserializationError
		ne net.Error
	)
	if err == nil || !errors.As(err, &re) || re.HTTPStatusCode() >= 300 || !errors.As(err, &de) {
		return false
	}
	return !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &ne) && !errors.Is(err, syscall.ECONNRESET)
}

// errorCode returns the S3 error code of err, "" if it is none.
func errorCode(err error) string {
	r, _ := responseOf(err)
	return r.code
}

// statusOf returns the HTTP status of the S3 answer err reports, 0 if it
// is none.
func statusOf(err error) int {
	r, _ := responseOf(err)
	return r.status
}

// statusTransient reports whether an S3 error response is worth repeating:
// server errors, throttling, and request timeouts.
func statusTransient(resp response) bool {
	switch resp.code {
	case "SlowDown", "SlowDownRead", "SlowDownWrite", "Throttling", "ThrottlingException",
		"RequestLimitExceeded", "RequestThrottled", "RequestTimeout", "InternalError",
		"ServiceUnavailable", "ExpiredToken", "ExpiredTokenException",
		"ConditionalRequestConflict", // a racing conditional write; repeating gets 412 or success
		"OperationAborted":           // a conflicting operation in progress (409): "try again"
		return true
	}
	if resp.status == http.StatusNotImplemented {
		return false // a feature the store lacks (such as If-None-Match): repeating cannot help
	}
	return resp.status >= 500 || resp.status == http.StatusTooManyRequests || resp.status == http.StatusRequestTimeout
}

// networkTransient classifies a failure below HTTP: dropped and refused
// connections and timeouts are transient; certificate problems, unknown
// hosts and cancellation are not.
func networkTransient(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var (
		alert  tls.AlertError
		record tls.RecordHeaderError
		dns    *net.DNSError
	)
	switch {
	case certFailure(err) != nil, errors.As(err, &alert), errors.As(err, &record):
		return false
	case errors.As(err, &dns):
		return !dns.IsNotFound
	}
	return true
}

// certFailure returns the verification failure of the server's
// certificate that err holds, or nil: an x509.UnknownAuthorityError (a
// CA this machine does not trust), or a certificate not valid for the
// server.
func certFailure(err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
	)
	switch {
	case errors.As(err, &unknownCA):
		return unknownCA
	case errors.As(err, &invalid):
		return invalid
	case errors.As(err, &hostname):
		return hostname
	}
	return nil
}
