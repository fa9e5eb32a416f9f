package local

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/nestguard/nestguard/internal/backend"
)

// fullError is a write the file system refused for lack of space or
// quota: it says so, and what to do, in words, and matches
// backend.ErrFull.
type fullError struct {
	dir string
	err error
}

func (e *fullError) Error() string {
	return fmt.Sprintf("%v: the storage is full (the repository at %s): %s", e.err, e.dir, backend.FullAdvice)
}

func (e *fullError) Unwrap() []error { return []error{backend.ErrFull, e.err} }

// full returns err, marked as a full storage when it is one.
func (b *Backend) full(err error) error {
	if err == nil || errors.Is(err, backend.ErrFull) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &fullError{dir: b.dir, err: err}
	}
	return err
}
