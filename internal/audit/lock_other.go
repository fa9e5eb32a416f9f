//go:build !unix

package audit

import "os"

// lockFile does nothing where flock is missing: two flushes at once may
// then record the same items twice (never lose them).
func lockFile(*os.File) error { return nil }

// noFollow is not known here.
const noFollow = 0

// checkPrivate checks nothing where file ownership is not Unix's.
func checkPrivate(string, *os.File) error { return nil }
