//go:build !linux

package pg

import "os"

// mapWALFile maps WAL files on Linux only; elsewhere they are read.
func mapWALFile(*os.File, int64) ([]byte, func(), bool) { return nil, nil, false }
