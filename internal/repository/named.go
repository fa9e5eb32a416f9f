package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/compress"
	"github.com/nestguard/nestguard/internal/hugemem"
)

// Named objects are sealed objects stored under a name the caller chooses
// (PostgreSQL WAL segments under their WAL file name) rather than the hash
// of their bytes. The name is sealed inside the object and checked on load,
// so a valid object copied to another name is detected, not replayed.

// ErrNamedExists is returned by SaveNamed when an object of that name is
// already stored; it wraps fs.ErrExist.
var ErrNamedExists = fmt.Errorf("object already stored: %w", fs.ErrExist)

// SaveNamed seals plain (compressed when worth it) and stores it as t/name.
// An existing object of that name is never replaced: the error wraps
// fs.ErrExist and the caller decides (see LoadNamed to compare).
func (r *Repository) SaveNamed(ctx context.Context, t backend.FileType, name string, plain []byte) error {
	return r.saveNamedPlain(ctx, t, name, plain, false)
}

// SaveNamedDeferred is SaveNamed for a caller storing many objects at
// once: on a store where a name becomes durable with a directory sync (a
// local directory, backend.DeferredSaver), the object's name is durable
// only once SyncNamed returns; elsewhere at once, as with SaveNamed.
func (r *Repository) SaveNamedDeferred(ctx context.Context, t backend.FileType, name string, plain []byte) error {
	return r.saveNamedPlain(ctx, t, name, plain, true)
}

// SyncNamed makes the names of objects t/names stored with
// SaveNamedDeferred durable, one directory sync for all.
func (r *Repository) SyncNamed(ctx context.Context, t backend.FileType, names []string) error {
	ds, ok := backend.As[backend.DeferredSaver](r.be)
	if !ok || len(names) == 0 {
		return nil
	}
	hs := make([]backend.Handle, len(names))
	for i, n := range names {
		hs[i] = backend.Handle{Type: t, Name: n}
	}
	return ds.SyncNames(ctx, hs)
}

// SaveNamedStream is SaveNamed for size bytes read from rd, compressed
// while they are read (compress.CompressStream): the plaintext is never
// held whole. It is what archive-wal stores a segment with; a caller that
// has the bytes already uses SaveNamed. Unlike SaveNamed it stores even
// data that does not compress compressed (zstd's raw blocks).
func (r *Repository) SaveNamedStream(ctx context.Context, t backend.FileType, name string, rd io.Reader, size int) error {
	return r.saveNamed(ctx, t, name, r.streamRoom(size), false, func(buf []byte) ([]byte, error) {
		if r.fast == nil {
			buf = append(buf, flagRaw)
			n, err := io.ReadFull(rd, buf[len(buf):len(buf)+size])
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return nil, fmt.Errorf("reading byte %d of %d: %w", n, size, err)
			}
			return buf[:len(buf)+size], nil
		}
		return r.fast.CompressStream(append(buf, flagZstd), rd, size)
	})
}

// SaveNamedPieces is SaveNamedStream for bytes already in memory, such
// as a mapped WAL segment: the same object, compressed in pieces where
// they lie (compress.CompressPieces) instead of copied first. check, when
// not nil, runs once plain has been compressed (or copied) and before
// anything is stored: an error from it stores nothing (a mapped file that
// shrank meanwhile was read as zeros past its new end). plain is not read
// after check is called: check may release it.
func (r *Repository) SaveNamedPieces(ctx context.Context, t backend.FileType, name string, plain []byte, check func() error) error {
	return r.saveNamed(ctx, t, name, r.streamRoom(len(plain)), false, func(buf []byte) ([]byte, error) {
		var err error
		if r.fast == nil {
			buf = packBody(nil, buf, plain)
		} else if buf, err = r.fast.CompressPieces(append(buf, flagZstd), plain); err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(); err != nil {
				return nil, err
			}
		}
		return buf, nil
	})
}

// streamRoom is the most a body of size bytes takes as SaveNamedStream
// and SaveNamedPieces store it: flagged, and compressed in pieces unless
// compression is off.
func (r *Repository) streamRoom(size int) int {
	if r.fast == nil {
		return 1 + size
	}
	return 1 + compress.StreamBound(size)
}

func (r *Repository) saveNamedPlain(ctx context.Context, t backend.FileType, name string, plain []byte, deferred bool) error {
	// Room for the worst case: a large input is then compressed straight
	// into buf (compress.Bound), and the pages never written cost nothing.
	need := 1 + max(len(plain), compress.Bound(len(plain)))
	return r.saveNamed(ctx, t, name, need, deferred, func(buf []byte) ([]byte, error) {
		return packBody(r.fast, buf, plain), nil
	})
}

// saveNamed seals the body that body appends (at most need bytes) and
// stores it as t/name.
func (r *Repository) saveNamed(ctx context.Context, t backend.FileType, name string, need int, deferred bool, body func([]byte) ([]byte, error)) error {
	h := backend.Handle{Type: t, Name: name}
	if len(name) == 0 || len(name) > 255 {
		return fmt.Errorf("saving %s: a name must have 1 to 255 bytes", h)
	}
	sealed, release, err := r.sealNamed(t, name, need, body)
	if err != nil {
		return fmt.Errorf("sealing %s: %w", h, err)
	}
	defer release()
	if ds, ok := backend.As[backend.DeferredSaver](r.be); ok && deferred {
		err = ds.SaveDeferred(ctx, h, bytes.NewReader(sealed), int64(len(sealed)))
	} else {
		err = r.be.Save(ctx, h, bytes.NewReader(sealed), int64(len(sealed)))
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", h, ErrNamedExists)
	}
	if err != nil {
		return fmt.Errorf("saving %s: %w", h, err)
	}
	return nil
}

// sealNamed seals the body of named object name in the memory it is
// built in (a WAL segment is 16 MiB, and archive-wal's time is what
// PostgreSQL waits on): room for the nonce, then the body (the flag and
// what follows, at most need bytes, appended by body), then the tag.
// release gives the memory back once the sealed bytes are no longer used.
func (r *Repository) sealNamed(t backend.FileType, name string, need int, body func([]byte) ([]byte, error)) (sealed []byte, release func(), err error) {
	pre := r.key.SealPrefix()
	buf, release := r.namedBufs.get(pre + 1 + len(name) + need + r.key.Overhead())
	buf = buf[:pre]
	buf = append(buf, byte(len(name)))
	buf = append(buf, name...)
	if buf, err = body(buf); err != nil {
		release()
		return nil, nil, err
	}
	sealed, err = r.key.SealInPlace(buf, adNamed(t, name))
	if err != nil {
		release()
		return nil, nil, err
	}
	return sealed, release, nil
}

// LoadNamed reads, authenticates and decompresses t/name. A missing object
// yields an error wrapping fs.ErrNotExist; a damaged one, ErrObjectCorrupted.
func (r *Repository) LoadNamed(ctx context.Context, t backend.FileType, name string) ([]byte, error) {
	plain, _, err := r.LoadNamedPooled(ctx, t, name, nil)
	return plain, err
}

// LoadNamedPooled is LoadNamed decompressing into a buffer from pool (a
// WAL segment is 16 MiB, which fresh memory pays for in page faults: see
// hugemem); release gives it back, and plain must not be used after. A
// nil pool decompresses into the Go heap.
func (r *Repository) LoadNamedPooled(ctx context.Context, t backend.FileType, name string, pool *hugemem.Pool) (plain []byte, release func(), err error) {
	h := backend.Handle{Type: t, Name: name}
	sealed, err := backend.ReadAll(ctx, r.be, h, maxNamedSealedLen)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", h, err)
	}
	return r.openNamed(h, sealed, pool)
}

// OpenNamed authenticates and decodes the stored bytes of named object h,
// decrypting them in place (sealed is overwritten).
func (r *Repository) OpenNamed(h backend.Handle, sealed []byte) ([]byte, error) {
	plain, _, err := r.openNamed(h, sealed, nil)
	return plain, err
}

func (r *Repository) openNamed(h backend.Handle, sealed []byte, pool *hugemem.Pool) ([]byte, func(), error) {
	body, err := r.key.OpenInPlace(sealed, adNamed(h.Type, h.Name))
	if err != nil {
		return nil, nil, openFailed(h.String(), err)
	}
	if len(body) < 1 || len(body) < 1+int(body[0]) || string(body[1:1+int(body[0])]) != h.Name {
		return nil, nil, fmt.Errorf("%s: %w: the object was stored under another name", h, ErrObjectCorrupted)
	}
	body = body[1+int(body[0]):]
	var dst []byte
	release := func() {}
	if len(body) > 1 && body[0] == flagZstd && pool != nil {
		if n, ok := compress.DecodedSize(body[1:]); ok && n <= maxNamedPlainLen {
			b := pool.Get(n)
			dst, release = b.Bytes()[:0], func() { pool.Put(b) }
		}
	}
	plain, err := r.unpackBody(dst, body, maxNamedPlainLen)
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("%s: %w", h, err)
	}
	return plain, release, nil
}
