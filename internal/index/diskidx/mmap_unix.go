//go:build unix

package diskidx

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps the first n bytes of f read-only and tells the kernel that
// reads are random, so that it does not read ahead pages no lookup needs.
func mapFile(f *os.File, n int) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	_ = unix.Madvise(b, unix.MADV_RANDOM) // advice only
	return b, nil
}

func unmapFile(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.Munmap(b)
}
