//go:build !unix

package diskidx

import (
	"io"
	"os"
)

// mapFile reads the file where it cannot be mapped: correct, but in memory.
func mapFile(f *os.File, n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := f.ReadAt(b, 0)
	if err == io.EOF {
		err = nil
	}
	return b, err
}

func unmapFile([]byte) error { return nil }
