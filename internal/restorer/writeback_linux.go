package restorer

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/nestguard/nestguard/internal/directio"
)

// startWriteback asks the kernel to start writing f's dirty pages to disk
// without waiting for them (sync_file_range, SYNC_FILE_RANGE_WRITE). With
// drop, it then drops f's clean pages from the page cache
// (POSIX_FADV_DONTNEED, which leaves dirty pages and pages being written
// alone): those an earlier call started writing and that are on disk by
// now. Both are hints: durability still needs an fsync, and an error
// changes nothing.
func startWriteback(f *os.File, drop bool) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	if drop {
		_ = directio.Uncache(f)
	}
}
