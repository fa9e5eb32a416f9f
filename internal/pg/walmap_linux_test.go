package pg

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMapWALFileLease: while archive-wal has a segment mapped, another
// process's truncate waits for it to be unmapped (the read lease), so the
// reader never dies of SIGBUS; and the truncate then goes ahead.
func TestMapWALFileLease(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh here")
	}
	path := filepath.Join(t.TempDir(), "000000010000000000000001")
	want := bytes.Repeat([]byte{7}, 1<<20)
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, unmap, ok := mapWALFile(f, int64(len(want)))
	if !ok {
		t.Fatal("not mapped")
	}
	if l, err := unix.FcntlInt(f.Fd(), unix.F_GETLEASE, 0); err != nil || l != unix.F_RDLCK {
		unmap()
		if b, _ := os.ReadFile("/proc/sys/fs/leases-enable"); string(bytes.TrimSpace(b)) == "0" {
			t.Skip("leases are disabled here (/proc/sys/fs/leases-enable)")
		}
		t.Fatalf("mapped without a read lease (F_GETLEASE %d, %v)", l, err)
	}
	// The shell's "> file" opens it with O_TRUNC and waits for the lease
	// (truncate(1) opens with O_NONBLOCK and fails at once instead).
	cmd := exec.Command(sh, "-c", `: >"$1"`, "sh", path)
	if err := cmd.Start(); err != nil {
		unmap()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		unmap()
		t.Fatalf("the file was truncated while mapped (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	if !bytes.Equal(data, want) {
		t.Error("the mapping changed under the lease")
	}
	unmap()
	if err := <-done; err != nil {
		t.Fatalf("truncate after the unmap: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("after the unmap the truncate did not happen: %v", err)
	}
}
