package pg

import (
	"os"
	"syscall"
)

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
