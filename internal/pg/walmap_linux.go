package pg

import (
	"errors"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// mapWALFile maps the size bytes of f read-only and returns them with the
// function that unmaps them; ok is false where the file cannot be mapped
// whole (the caller reads it instead).
//
// A mapped file that another process truncates while it is read kills the
// reader with SIGBUS (inside libzstd, where Go cannot turn it into an
// error), where read(2) would return a short count. PostgreSQL never
// truncates a segment it has not seen archived; so that nothing else can
// either, the file is mapped under a read lease (fcntl F_SETLEASE) where
// the kernel grants one: an open for writing or a truncate by another
// process then waits until it is unmapped (at most lease-break-time, 45 s
// by default; Go ignores the SIGIO that tells the holder). The lease goes
// with f: f must stay open until unmap has been called. The kernel
// grants none while the file is open for writing elsewhere (a PostgreSQL
// backend may still hold the segment it wrote last) or to a process that
// neither owns the file nor has CAP_LEASE; the file is mapped all the
// same then.
func mapWALFile(f *os.File, size int64) (data []byte, unmap func(), ok bool) {
	if size <= 0 || size > math.MaxInt32 {
		return nil, nil, false
	}
	fd := f.Fd()
	_, lerr := unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_RDLCK)
	unlease := func() {
		if lerr == nil {
			unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_UNLCK)
		}
	}
	data, err := unix.Mmap(int(fd), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unlease()
		return nil, nil, false
	}
	unmap = func() {
		unix.Munmap(data)
		unlease()
	}
	// Every page mapped in one call (Linux 5.14): a fault for each would
	// cost more. It fails with EFAULT when the file is shorter than the
	// mapping by now (reading it then says so); before 5.14 (EINVAL) the
	// pages fault in as they are read.
	if err := unix.Madvise(data, unix.MADV_POPULATE_READ); err != nil && !errors.Is(err, unix.EINVAL) {
		unmap()
		return nil, nil, false
	}
	return data, unmap, true
}
