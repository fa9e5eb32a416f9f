package retry

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io/fs"
	"net"
	"syscall"
)

// transient is implemented by errors that know whether repeating the
// request may help; backends mark their protocol-level errors this way
// (an S3 503 SlowDown is transient, a 403 is not).
type transient interface {
	Transient() bool
}

// IsTransient reports whether err may go away when the operation is
// repeated: errors that say so themselves (see the Transient method),
// timeouts, and refused, reset or broken connections. "Exists", "does not
// exist", permission errors, cancellation and answers that cannot be
// parsed never are: a server that answers in a form the client does not
// understand answers the same way again.
func IsTransient(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, fs.ErrExist),
		errors.Is(err, fs.ErrNotExist),
		errors.Is(err, fs.ErrPermission),
		errors.Is(err, context.Canceled),
		IsParseError(err):
		return false
	}
	var tr transient
	if errors.As(err, &tr) {
		return tr.Transient()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, errno := range []syscall.Errno{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// IsParseError reports whether err is a failure to parse a response (XML
// or JSON): the server answered, in a form the client does not read.
func IsParseError(err error) bool {
	var (
		xmlSyntax    *xml.SyntaxError
		xmlUnmarshal xml.UnmarshalError
		jsonSyntax   *json.SyntaxError
		jsonType     *json.UnmarshalTypeError
	)
	return errors.As(err, &xmlSyntax) || errors.As(err, &xmlUnmarshal) ||
		errors.As(err, &jsonSyntax) || errors.As(err, &jsonType)
}
