//go:build !linux

package pg

import "os"

// mapWALFile maps WAL files on Linux only; elsewhere they are read.
func mapWALFile(*os.File, int64) ([]byte, func(), bool) { return nil, nil, false }

// identOf: no file identity here; acknowledgements are checked by digest.
func identOf(os.FileInfo) (fileIdent, bool) { return fileIdent{}, false }
