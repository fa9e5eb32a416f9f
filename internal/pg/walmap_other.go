//go:build !linux

package pg

import "os"

// mapWALFile: not here; the segment is read (archiveStreamed).
func mapWALFile(*os.File, int64) ([]byte, func(), bool) { return nil, nil, false }
