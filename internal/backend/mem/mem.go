// Package mem is an in-memory backend for engine unit tests. It keeps the
// backend contract exactly, so tests that pass against it exercise the same
// behaviour a real store shows, without touching the disk.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
)

type object struct {
	data    []byte
	modTime time.Time
}

// Backend stores objects in a map. The zero value is not usable: call New.
type Backend struct {
	mu      sync.Mutex
	objects map[backend.Handle]object
}

var _ backend.Backend = (*Backend)(nil)

// New returns an empty in-memory backend.
func New() *Backend {
	return &Backend{objects: make(map[backend.Handle]object)}
}

// key normalises h: the config object has one fixed name whatever the
// caller passes, as on every other backend.
func key(h backend.Handle) backend.Handle {
	if h.Type == backend.ConfigFile {
		h.Name = string(backend.ConfigFile)
	}
	return h
}

func check(h backend.Handle) error {
	if h.Type == "" || (h.Type != backend.ConfigFile && h.Name == "") {
		return fmt.Errorf("invalid object handle %q: type and name are required", h.String())
	}
	return nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return "mem:" }

// Save implements backend.Backend. The bytes are copied, so the caller may
// reuse its buffer.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	if err := check(h); err != nil {
		return err
	}
	if err := backend.CheckSave(ctx, h, size); err != nil {
		return err
	}
	// Read one byte more than announced to catch a reader that is longer.
	data, err := io.ReadAll(io.LimitReader(rd, size+1))
	if err != nil {
		return fmt.Errorf("saving %s: reading the data: %w", h, err)
	}
	if int64(len(data)) != size {
		return fmt.Errorf("saving %s: got %d bytes, expected %d", h, len(data), size)
	}
	k := key(h)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.objects[k]; ok {
		return fmt.Errorf("saving %s: %w", h, fs.ErrExist)
	}
	b.objects[k] = object{data: data, modTime: time.Now()}
	return nil
}

// Load implements backend.Backend. A range past the end of the object
// fails on read with io.ErrUnexpectedEOF, as it does for files.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	if err := check(h); err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("loading %s: invalid range offset %d length %d", h, offset, length)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, err)
	}
	b.mu.Lock()
	o, ok := b.objects[key(h)]
	b.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("loading %s: %w", h, fs.ErrNotExist)
	}
	size := int64(len(o.data))
	want := length
	if length == 0 {
		want = size - offset // negative: offset past the end
	}
	start := min(offset, size)
	have := min(size-start, max(want, 0))
	// Stored slices are never modified, and a Reader copies out on Read, so
	// no caller can alter the stored object through it.
	r := bytes.NewReader(o.data[start : start+have])
	return io.NopCloser(backend.ExactReader(r, h, offset, want, size)), nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := check(h); err != nil {
		return backend.FileInfo{}, err
	}
	k := key(h)
	b.mu.Lock()
	o, ok := b.objects[k]
	b.mu.Unlock()
	if !ok {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, fs.ErrNotExist)
	}
	return backend.FileInfo{Name: k.Name, Size: int64(len(o.data)), ModTime: o.modTime}, nil
}

// List implements backend.Backend. It works on a snapshot of the names, so
// fn may call back into the backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	var infos []backend.FileInfo
	b.mu.Lock()
	for k, o := range b.objects {
		if k.Type == t {
			infos = append(infos, backend.FileInfo{Name: k.Name, Size: int64(len(o.data)), ModTime: o.modTime})
		}
	}
	b.mu.Unlock()
	for _, fi := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("listing %s: %w", t, err)
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := check(h); err != nil {
		return err
	}
	k := key(h)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.objects[k]; !ok {
		return fmt.Errorf("removing %s: %w", h, fs.ErrNotExist)
	}
	delete(b.objects, k)
	return nil
}

// Close implements backend.Backend; the objects stay available.
func (b *Backend) Close() error { return nil }
