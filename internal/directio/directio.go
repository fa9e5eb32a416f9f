// Package directio reads files past the page cache (O_DIRECT).
//
// On the virtual machines nestguard was measured on, a buffered read of
// data not yet cached costs the kernel more CPU than nestguard's own work
// on the byte: pages allocated, filled by readahead and copied out, 0.5-2
// ns a byte, against 0.03-0.05 ns for a direct read into a buffer that is
// reused. Reading once what is read once (a large file being backed up, a
// pack being restored) also leaves the page cache to what others use.
//
// Data already in the page cache is better read through it: a direct
// read would fetch it from the disk again (and write dirty pages out
// first), so callers ask Resident before reading directly.
package directio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Align is the alignment O_DIRECT wants of buffers, offsets and lengths:
// the logical block size, at most the page size in practice. Mapped
// buffers (hugemem) are aligned to it.
const Align = 4096

// AlignUp rounds n up to a multiple of Align.
func AlignUp(n int64) int64 { return (n + Align - 1) &^ (Align - 1) }

// Aligned reports whether p starts on an Align boundary in memory, as a
// direct write's buffer must.
func Aligned(p []byte) bool { return Shift(p, 0) == 0 }

// Shift returns the index i in [0, Align) at which p[i:] begins at
// offset at within a page (at modulo Align): data that will be written at
// file offset off, placed at p[Shift(p, int(off%Align)):], is in the same
// position within its pages in memory as in the file, so its whole pages
// can be written directly from there (Filler).
func Shift(p []byte, at int) int {
	addr := int(uintptr(unsafe.Pointer(unsafe.SliceData(p))) % Align)
	return ((at-addr)%Align + Align) % Align
}

// Open opens path read-only for direct reads, without updating its access
// time where the caller may ask that. A file system that does not take
// direct reads fails here (tmpfs: EINVAL), or on the first read.
func Open(path string) (*os.File, error) { return openFlags(path, 0) }

// openFlags is Open with flags added.
func openFlags(path string, flags int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT|unix.O_NOATIME|flags, 0)
	if err != nil {
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT|flags, 0)
	}
	return f, err
}

// OpenSame opens the file f has open again, for direct reads as Open
// does (path names it in errors): through /proc/self/fd, so that it is
// that file whatever happened to path since (replaced, or by a FIFO, whose
// open would wait for a writer: found by a hostile test of the backup's
// walk). Where /proc is not mounted, path is opened (never through a
// symbolic link at its end, without waiting) and checked to be the same
// file: one replaced since f was opened fails.
func OpenSame(f *os.File, path string) (*os.File, error) {
	proc := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	fd, err := unix.Open(proc, unix.O_RDONLY|unix.O_DIRECT|unix.O_NOATIME|unix.O_CLOEXEC, 0)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		fd, err = unix.Open(proc, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	}
	if err == nil {
		return os.NewFile(uintptr(fd), path), nil // named as the caller knows it
	}
	if !errors.Is(err, unix.ENOENT) {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	df, err := openFlags(path, unix.O_NOFOLLOW|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	var st1, st2 unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st1); err != nil {
		df.Close()
		return nil, err
	}
	if err := unix.Fstat(int(df.Fd()), &st2); err != nil {
		df.Close()
		return nil, err
	}
	if st1.Dev != st2.Dev || st1.Ino != st2.Ino {
		df.Close()
		return nil, &os.PathError{Op: "open", Path: path, Err: errReplaced}
	}
	return df, nil
}

var errReplaced = errors.New("replaced since it was opened")

// Uncache drops f's clean pages from the page cache
// (POSIX_FADV_DONTNEED; dirty pages and pages being written stay). Pages
// written and then dropped are taken again by the next writes instead of
// fresh ones, which on a virtual machine cost the kernel more than the
// copy into them (docs/benchmarks.md, stop 35).
func Uncache(f *os.File) error {
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// Evict syncs the file at path and drops its pages from the page cache
// (Uncache), so that the next read of it comes from the disk, without the
// privileges drop_caches needs.
func Evict(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return Uncache(f)
}

// ReadAt reads len(buf) bytes at off from f, opened by Open (buf, off and
// len(buf) aligned), fewer at the end of the file (err nil): it stops
// after a read that ends unaligned, where the next would fail.
func ReadAt(f *os.File, buf []byte, off int64) (int, error) {
	fd := int(f.Fd())
	n := 0
	for n < len(buf) {
		m, err := unix.Pread(fd, buf[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, &os.PathError{Op: "read", Path: f.Name(), Err: err}
		}
		n += m
		if m == 0 || m%Align != 0 {
			return n, nil
		}
	}
	return n, nil
}

// Reader reads one file block by block past the page cache while the
// file system allows it, and through it from then on.
type Reader struct {
	f      *os.File // through the page cache: the caller's
	df     *os.File // past it (Open); the Reader's, closed by Close
	direct bool
}

// NewReader returns a reader of the file f has open; df is the same file
// opened by Open (OpenSame), or nil to read through the page cache only.
func NewReader(f, df *os.File) *Reader { return &Reader{f: f, df: df, direct: df != nil} }

// Direct reports whether the next ReadBlock reads past the page cache.
func (r *Reader) Direct() bool { return r.direct }

// ReadBlock reads len(buf) bytes at off, fewer only at the end of the
// file (err nil) or on an error: past the page cache while Direct (buf,
// off and len(buf) aligned), else through it. A file system that refuses
// the direct read (EINVAL before any byte) or a short direct read (the
// end of the file, or the file system's own short read: either way the
// next offset is unaligned) ends the direct reads: the refused block and
// every later one are read through the page cache.
func (r *Reader) ReadBlock(buf []byte, off int64) (int, error) {
	if !r.direct {
		return ReadCached(r.f, buf, off)
	}
	n, err := ReadAt(r.df, buf, off)
	switch {
	case errors.Is(err, unix.EINVAL) && n == 0:
		r.direct = false
		return ReadCached(r.f, buf, off)
	case err == nil && n < len(buf):
		r.direct = false
	}
	return n, err
}

// Close closes the descriptor of direct reads, if any; f stays open.
func (r *Reader) Close() error {
	if r.df == nil {
		return nil
	}
	return r.df.Close()
}

// ReadCached reads len(buf) bytes at off of f through the page cache,
// fewer only at the end of the file (err nil) or on an error: what a
// reader falls back to where direct reads do not work.
func ReadCached(f *os.File, buf []byte, off int64) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := f.ReadAt(buf[n:], off+int64(n))
		n += m
		if err == io.EOF || (err == nil && m == 0) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Resident reports whether the n bytes of f at off are all in the page
// cache (up to the end of the file): mincore over a mapping of them,
// which reads nothing. False when n <= 0 or when it cannot tell.
func Resident(f *os.File, off, n int64) bool {
	if n <= 0 {
		return false
	}
	page := int64(os.Getpagesize())
	start := off &^ (page - 1)
	n += off - start
	m, err := unix.Mmap(int(f.Fd()), start, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return false
	}
	defer unix.Munmap(m)
	vec := make([]byte, (n+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return false
	}
	for _, v := range vec {
		if v&1 == 0 {
			return false
		}
	}
	return true
}
