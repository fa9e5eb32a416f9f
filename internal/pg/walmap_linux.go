package pg

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// mapWALFile maps the first size bytes of f read-only and returns them
// with the function that unmaps them. archive-wal reads each segment once,
// whole: a read(2) into fresh memory costs a page fault per 4 KiB and a
// copy of 16 MiB, about a third of a call's CPU time, where the mapping
// shares the page cache's pages (MAP_POPULATE maps them in one call).
//
// The mapping is only read. PostgreSQL never shrinks a segment it asked
// to archive (it recycles it by rename and rewrite only once archived),
// and the size was just checked; a file truncated by someone else while
// mapped would kill the process (SIGBUS): exit status not 0, so
// PostgreSQL keeps the segment and retries, as for any failure. ok is
// false when mapping is not possible (a file system without mmap): the
// caller then reads.
func mapWALFile(f *os.File, size int64) (data []byte, unmap func(), ok bool) {
	if size <= 0 || size != int64(int(size)) {
		return nil, nil, false
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, nil, false
	}
	// Munmap fails only on an address that is not a mapping.
	return b, func() { unix.Munmap(b) }, true
}

// identOf returns the identity of the file fi describes: device, inode,
// size, and modification and change times. A file replaced, recycled,
// renamed, rewritten or restored has another.
func identOf(fi os.FileInfo) (fileIdent, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Ino == 0 {
		return fileIdent{}, false
	}
	return fileIdent{Dev: st.Dev, Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, true
}
