package miniotest

import (
	"strings"
	"sync"
)

// logTail keeps the last max bytes written to it: enough of the server's
// output to explain a failure, without holding a long run's log.
type logTail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - l.max; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept output from the first complete line on.
func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := string(l.buf)
	if len(l.buf) == l.max {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}
