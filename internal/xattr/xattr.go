// Package xattr reads the lists and values of extended attributes through
// whichever call a caller makes them with (by path, by descriptor,
// relative to a directory): the buffer sizing and the parsing the
// backup, which reads them, and the restore, which removes the ones a
// snapshot lacks, share.
package xattr

import (
	"bytes"
	"errors"

	"golang.org/x/sys/unix"
)

// Names returns the attribute names list gives (listxattr(2) and its
// kin: it fills buf and returns the bytes used, or with a nil buf the
// size needed). A file system without extended attributes has none.
func Names(list func(buf []byte) (int, error)) ([]string, error) {
	n, buf, err := fill(list)
	switch {
	case errors.Is(err, unix.ENOTSUP):
		return nil, nil
	case err != nil:
		return nil, err
	case n == 0: // most files: no allocation
		return nil, nil
	}
	var names []string
	for _, b := range bytes.Split(buf[:n], []byte{0}) {
		if len(b) > 0 {
			names = append(names, string(b))
		}
	}
	return names, nil
}

// Value returns the value get gives (getxattr(2) and its kin, called
// as list is by Names), in memory of its own.
func Value(get func(buf []byte) (int, error)) ([]byte, error) {
	n, buf, err := fill(get)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(buf[:n]), nil
}

// fill calls call with a buffer large enough: on ERANGE (grown since it
// was sized) it asks for the size and tries again.
func fill(call func([]byte) (int, error)) (int, []byte, error) {
	var small [256]byte
	buf := small[:]
	for {
		n, err := call(buf)
		if !errors.Is(err, unix.ERANGE) {
			return n, buf, err
		}
		if n, err = call(nil); err != nil {
			return 0, nil, err
		}
		buf = make([]byte, n+256)
	}
}
