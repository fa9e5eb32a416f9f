// Package progress shows the state of long work on a terminal and stays
// silent otherwise, so scripts and logs see only results.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/term"
)

// Status is what a running operation reports.
type Status struct {
	Files, FilesTotal int64
	Bytes, BytesTotal int64 // BytesTotal 0: unknown
	Errors            int64
	Extra             string
}

// Reporter redraws one status line on a terminal every interval.
type Reporter struct {
	w     io.Writer
	tty   bool
	poll  func() Status
	start time.Time
	stop  chan struct{}
	done  sync.WaitGroup
}

// IsTerminal reports whether w is a terminal: a file (an *os.File) whose
// descriptor is one.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// Start begins reporting poll() to w if enabled; Stop ends it.
func Start(w io.Writer, enabled bool, poll func() Status) *Reporter {
	r := &Reporter{w: w, tty: enabled && IsTerminal(w), poll: poll, start: time.Now(), stop: make(chan struct{})}
	if !r.tty {
		return r
	}
	r.done.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				fmt.Fprint(r.w, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprint(r.w, "\r\033[K"+Line(r.poll(), time.Since(r.start)))
			}
		}
	})
	return r
}

// Stop clears the status line.
func (r *Reporter) Stop() {
	if r.tty {
		close(r.stop)
		r.done.Wait()
	}
}

// Line formats a status: elapsed, files, bytes, rate and ETA when the total
// is known.
func Line(s Status, elapsed time.Duration) string {
	rate := float64(s.Bytes) / max(elapsed.Seconds(), 0.001)
	line := fmt.Sprintf("[%s] %d", Duration(elapsed), s.Files)
	if s.FilesTotal > 0 {
		line += fmt.Sprintf("/%d", s.FilesTotal)
	}
	line += " files, " + Bytes(s.Bytes)
	if s.BytesTotal > 0 {
		pct := 100 * float64(s.Bytes) / float64(s.BytesTotal)
		line += fmt.Sprintf("/%s %.1f%%", Bytes(s.BytesTotal), pct)
	}
	line += ", " + Bytes(int64(rate)) + "/s"
	if s.BytesTotal > s.Bytes && rate > 0 {
		eta := time.Duration(float64(s.BytesTotal-s.Bytes) / rate * float64(time.Second))
		line += " ETA " + Duration(eta)
	}
	if s.Errors > 0 {
		line += fmt.Sprintf(", %d errors", s.Errors)
	}
	if s.Extra != "" {
		line += ", " + s.Extra
	}
	return line
}

// Bytes formats n with binary units.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Duration formats d as h:mm:ss or m:ss.
func Duration(d time.Duration) string {
	s := int64(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
