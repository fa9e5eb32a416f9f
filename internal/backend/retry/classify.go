package retry

import (
	"context"
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
// exist", permission errors and cancellation never are.
func IsTransient(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, fs.ErrExist),
		errors.Is(err, fs.ErrNotExist),
		errors.Is(err, fs.ErrPermission),
		errors.Is(err, context.Canceled):
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
