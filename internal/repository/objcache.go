package repository

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/atomicfile"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
)

// The object cache keeps local copies of the stored bytes of snapshot
// objects, one file each, in <cache dir>/<repository id>/snapshots/<id>:
// every command that lists snapshots (backup looking for its parent,
// snapshots, forget, restore latest) would otherwise read them all from
// the storage each time, one request a snapshot (20,000 snapshots: 10-20
// s on a loopback MinIO, more from a distant store).
//
// The copies are safe to trust as far as the storage's own bytes are: a
// snapshot object is written once and named by the hash of its stored
// bytes, so a copy whose bytes hash to its name is that object byte for
// byte, and it is authenticated and decrypted as a read from the storage
// is. A copy that does not hash to its name (damaged, cut short by a
// crash: copies are written without fsync) is removed and the object read
// from the storage instead; nothing about the cache is ever reported as
// damage of the repository. Whether a snapshot exists is always the
// storage's answer: copies are read only for objects a listing just named
// (snapshot.List), and the copies of objects a complete listing did not
// name are removed. verify reads snapshots from the storage, not from
// here, so that damage there is found (snapshot.ListFromStorage).

// objectCacheDir is where the object cache keeps copies of objects of
// type t; "" when it keeps none (no cache directory, or a type it does
// not keep: only snapshots).
func objectCacheDir(cacheDir, repoID string, t backend.FileType) string {
	if cacheDir == "" || repoID == "" || t != backend.SnapshotFile {
		return ""
	}
	return filepath.Join(cacheDir, repoID, string(t))
}

var errDamagedCopy = errors.New("a cached copy does not match its name")

// objectCacheTemp prefixes the temporary files copies are written to
// (atomicfile's).
const objectCacheTemp = ".tmp-"

// LoadCachedObject is LoadObject for an object a listing of the storage
// just named: it reads the object from the local object cache when a copy
// there hashes to its name, and otherwise from the storage, keeping a
// copy. Types the cache does not keep are read from the storage.
func (r *Repository) LoadCachedObject(ctx context.Context, t backend.FileType, oid id.ID, v any) error {
	path, sealed, err := r.copyOf(t, oid)
	if path == "" {
		return r.LoadObject(ctx, t, oid, v)
	}
	if errors.Is(err, errDamagedCopy) {
		r.log.Debug("object cache: a copy does not match its name; reading the storage's", "path", path)
		os.Remove(path)
	}
	if err != nil {
		if sealed, err = r.readSealed(ctx, t, oid); err != nil {
			return err
		}
		r.keepCopy(path, sealed)
	}
	plain, err := r.openSealed(t, oid, sealed)
	if err != nil {
		return err
	}
	return decodeObject(t, oid, plain, v)
}

// copyOf returns the path of the copy of object t/oid in the object
// cache ("" when it keeps none of type t), and its bytes when they hash to
// the object's name; else an error: it cannot be read (there is none), or
// errDamagedCopy.
func (r *Repository) copyOf(t backend.FileType, oid id.ID) (path string, sealed []byte, err error) {
	dir := objectCacheDir(r.cacheDir, r.cfg.ID, t)
	if dir == "" {
		return "", nil, nil
	}
	path = filepath.Join(dir, oid.String())
	sealed, err = readCopy(path)
	if err == nil && r.objects.Sum(sealed) != oid {
		return path, nil, errDamagedCopy
	}
	return path, sealed, err
}

// readCopy reads a cached copy, refusing one larger than any object.
func readCopy(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxUnpackedObjectLen {
		return nil, fmt.Errorf("%s: not a copy", path)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// keepCopy writes a copy of an object's stored bytes (temporary name,
// rename; no fsync: a copy a crash cut short fails its hash and is read
// again). A cache that cannot be written is only logged: the storage
// serves.
func (r *Repository) keepCopy(path string, sealed []byte) {
	err := os.MkdirAll(filepath.Dir(path), 0o700)
	if err == nil {
		err = atomicfile.WriteUnsynced(path, sealed, 0o600)
	}
	if err != nil {
		r.log.Debug("object cache: cannot keep a copy", "path", path, "err", err)
	}
}

// PruneObjectCache removes the cached copies of objects of type t that
// ids, a complete listing of the storage, does not name (forgotten
// snapshots), and temporary files of writers that died an hour ago or
// more.
func (r *Repository) PruneObjectCache(t backend.FileType, ids []id.ID) {
	dir := objectCacheDir(r.cacheDir, r.cfg.ID, t)
	if dir == "" {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	listed := make(map[string]struct{}, len(ids))
	for _, oid := range ids {
		listed[oid.String()] = struct{}{}
	}
	for _, e := range entries {
		name := e.Name()
		if _, ok := listed[name]; ok {
			continue
		}
		if strings.HasPrefix(name, objectCacheTemp) {
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		}
		os.Remove(filepath.Join(dir, name))
	}
}

// GoodCopy returns the path of the local copy of object t/oid when its
// bytes hash to the object's name (the object as it was written), or "":
// verify names it beside a snapshot object damaged on the storage, whose
// exact bytes it can put back.
func (r *Repository) GoodCopy(t backend.FileType, oid id.ID) string {
	path, _, err := r.copyOf(t, oid)
	if err != nil {
		return ""
	}
	return path
}
