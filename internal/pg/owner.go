package pg

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/nestguard/nestguard/internal/tree"
)

// Owner is the OS user a restored cluster belongs to, and its server
// runs as when nestguard runs as root.
type Owner struct {
	name     string
	uid, gid int
	known    bool
}

// Name is the owner's user name ("" if unknown).
func (ow Owner) Name() string { return ow.name }

// OwnerOf reads the data directory's owner from the backup (PostgreSQL
// insists that one user owns every file), preferring the local user of
// the same name, since ids differ between machines.
func OwnerOf(root *tree.Tree) Owner {
	n := root.Find("PG_VERSION")
	if n == nil {
		n = root.Find("global")
	}
	if n == nil {
		return Owner{}
	}
	o := Owner{name: n.User, uid: int(n.UID), gid: int(n.GID), known: true}
	if n.User != "" {
		if u, err := user.Lookup(n.User); err == nil {
			uid, err1 := strconv.Atoi(u.Uid)
			gid, err2 := strconv.Atoi(u.Gid)
			if err1 == nil && err2 == nil {
				o.uid, o.gid = uid, gid
			}
		}
	}
	if o.name == "" {
		if u, err := user.LookupId(strconv.Itoa(o.uid)); err == nil {
			o.name = u.Username
		}
	}
	return o
}

// apply gives the data directory and tablespaces to the owner (when run
// as root) and sets the modes PostgreSQL requires.
func (ow Owner) apply(dataDir string, places []tablespacePlace) error {
	dirs := []string{dataDir}
	for _, p := range places {
		dirs = append(dirs, p.dir)
	}
	for _, d := range dirs {
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
		if os.Geteuid() != 0 || !ow.known {
			continue
		}
		err := filepath.WalkDir(d, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, ow.uid, ow.gid)
		})
		if err != nil {
			return fmt.Errorf("giving %s to %s: %w", d, ow.name, err)
		}
	}
	return nil
}

// credential runs a process as the owner when this process is root.
func (ow Owner) credential() *syscall.SysProcAttr {
	if os.Geteuid() != 0 || !ow.known || ow.uid == 0 {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(ow.uid), Gid: uint32(ow.gid), NoSetGroups: true}}
}
