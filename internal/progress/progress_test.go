package progress

import (
	"strings"
	"testing"
	"time"
)

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 3 << 30: "3.00 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestLineETA(t *testing.T) {
	l := Line(Status{Files: 3, FilesTotal: 6, Bytes: 100 << 20, BytesTotal: 200 << 20}, 10*time.Second)
	for _, want := range []string{"3/6 files", "50.0%", "ETA 0:10", "10.00 MiB/s"} {
		if !strings.Contains(l, want) {
			t.Errorf("line %q lacks %q", l, want)
		}
	}
}
