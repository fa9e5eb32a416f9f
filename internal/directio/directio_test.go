package directio

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/hugemem"
)

// TestReads: a file dropped from the page cache is not Resident, read
// through it is; ReadAt and ReadCached give the file's bytes, fewer at
// its end (an unaligned end stops ReadAt) and no error there.
func TestReads(t *testing.T) {
	size := 3<<20 + 123
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{7}).Read(data)
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Evict(p); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	df, err := Open(p)
	if err != nil {
		t.Skipf("this file system takes no direct reads: %v", err)
	}
	defer df.Close()
	if Resident(f, 0, int64(size)) {
		t.Error("a file dropped from the page cache is resident")
	}
	buf, ok := hugemem.Map(2 << 20)
	if !ok {
		t.Skip("no mapped memory for aligned buffers")
	}
	defer buf.Free()
	b := buf.Bytes()[:2<<20]
	for _, off := range []int64{0, 2 << 20} {
		n, err := ReadAt(df, b, off)
		want := data[off:min(off+int64(len(b)), int64(size))]
		if err != nil || !bytes.Equal(b[:n], want) {
			t.Errorf("ReadAt at %d: %d bytes, %v; want %d", off, n, err, len(want))
		}
	}
	// A Reader reads past the page cache until a short read (the end),
	// and through it from then on; without df, through it only.
	rd := NewReader(f, df)
	for _, off := range []int64{0, 2 << 20} {
		if !rd.Direct() {
			t.Fatalf("at %d: direct reads ended early", off)
		}
		n, err := rd.ReadBlock(b, off)
		if want := data[off:min(off+int64(len(b)), int64(size))]; err != nil || !bytes.Equal(b[:n], want) {
			t.Errorf("ReadBlock at %d: %d bytes, %v; want %d", off, n, err, len(want))
		}
	}
	if rd.Direct() {
		t.Error("direct reads go on after a short read")
	}
	if n, err := NewReader(f, nil).ReadBlock(b[:100], 5); err != nil || !bytes.Equal(b[:n], data[5:105]) {
		t.Errorf("ReadBlock through the page cache: %d bytes, %v", n, err)
	}
	c := make([]byte, 1<<20)
	n, err := ReadCached(f, c, int64(size)-1000)
	if err != nil || !bytes.Equal(c[:n], data[size-1000:]) {
		t.Errorf("ReadCached at the end: %d bytes, %v", n, err)
	}
	if _, err := os.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	if !Resident(f, 5, int64(size)-5) {
		t.Error("a file just read is not resident")
	}
	if Resident(f, 0, 0) {
		t.Error("an empty range is resident")
	}
}

// TestOpenSameReplaced: OpenSame opens the file f has open, whatever its
// path holds now: not a FIFO put in its place (whose open would wait for
// a writer), not another file.
func TestOpenSameReplaced(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<12)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var df *os.File
	go func() {
		defer close(done)
		df, err = OpenSame(f, p)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		w, _ := os.OpenFile(p, os.O_WRONLY, 0)
		w.Close()
		t.Fatal("OpenSame waited on the FIFO at the path")
	}
	if err != nil {
		t.Skipf("no direct reads here: %v", err) // tmpfs
	}
	defer df.Close()
	var st1, st2 syscall.Stat_t
	syscall.Fstat(int(f.Fd()), &st1)
	syscall.Fstat(int(df.Fd()), &st2)
	if st1.Ino != st2.Ino || st1.Dev != st2.Dev || df.Name() != p {
		t.Fatalf("OpenSame opened another file (inode %d, want %d) named %q", st2.Ino, st1.Ino, df.Name())
	}
}
