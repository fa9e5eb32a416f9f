//go:build !linux

package pg

// dirWatch: no directory notifications here; the asynchronous mode polls.
type dirWatch struct{}

func watchDirs(...string) *dirWatch    { return nil }
func (w *dirWatch) C() <-chan struct{} { return nil }
func (w *dirWatch) Close()             {}
