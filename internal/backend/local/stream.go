package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/directio"
)

var (
	_ backend.Streamer = (*Backend)(nil)
	_ backend.Lender   = (*pending)(nil)
)

// Create implements backend.Streamer: the object is written to a temporary
// file in the repository's root directory (its final directory depends on
// the name, which is not known yet) and linked to its name by Commit, as
// Save does. A killed writer leaves the temporary file for CleanTemp. A
// pack is written past the page cache where the file system takes that
// (directio.Writer, in blocks of writeBlock from the backend's pool).
func (b *Backend) Create(ctx context.Context, t backend.FileType) (backend.PendingObject, error) {
	if !knownType(t) || t == backend.ConfigFile {
		return nil, fmt.Errorf("creating object: unknown object type %q", t)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("creating %s object: %w", t, err)
	}
	f, err := createTemp(b.dir)
	if err != nil {
		return nil, b.full(fmt.Errorf("creating %s object: %w", t, err))
	}
	p := &pending{b: b, t: t, f: f}
	if t == backend.PackFile {
		p.dw, _ = directio.NewWriter(f, &b.direct, writeBlock)
	}
	return p, nil
}

type pending struct {
	b  *Backend
	t  backend.FileType
	f  *os.File         // nil once committed or aborted
	dw *directio.Writer // a pack's writes past the page cache, if the file system takes them
}

func (p *pending) Write(data []byte) (int, error) {
	if p.f == nil {
		return 0, errors.New("writing a finished object")
	}
	var n int
	var err error
	if p.dw != nil {
		n, err = p.dw.Write(data)
	} else {
		n, err = p.f.Write(data)
	}
	return n, p.b.full(err)
}

// Lend implements backend.Lender for a pack written past the page cache:
// the memory is in its current block.
func (p *pending) Lend(n int) []byte {
	if p.f == nil || p.dw == nil {
		return nil
	}
	return p.dw.Lend(n)
}

func (p *pending) Commit(ctx context.Context, name string) error {
	if p.f == nil {
		return errors.New("committing a finished object")
	}
	h := backend.Handle{Type: p.t, Name: name}
	dst, err := p.b.path(h)
	if err == nil {
		err = ctx.Err()
	}
	f := p.f
	p.f = nil
	if p.dw != nil && err != nil {
		p.dw.Abort()
	} else if p.dw != nil {
		err = p.dw.Close()
	}
	if err := publish(h, f.Name(), dst, finishTemp(f, err, p.t == backend.PackFile)); err != nil {
		return p.b.full(err)
	}
	return p.b.full(p.b.SyncNames(ctx, []backend.Handle{h}))
}

// linkNew gives tmp the name dst, never replacing an existing object, and
// makes dst's directory if an operator pruned it.
func linkNew(tmp, dst string) error {
	err := os.Link(tmp, dst)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(tmp); serr != nil {
			// Only CleanTemp removes temporary files, and only old ones: a
			// writer that stalled for that long must start the object again.
			return fmt.Errorf("the temporary file %s was removed while in use: %w", tmp, serr)
		}
		dir := filepath.Dir(dst)
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return err
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return err
		}
		err = os.Link(tmp, dst)
	}
	if errors.Is(err, fs.ErrExist) {
		err = fmt.Errorf("%w (object already stored)", err)
	}
	return err
}

func (p *pending) Abort() error {
	if p.f == nil {
		return nil
	}
	f := p.f
	p.f = nil
	if p.dw != nil {
		p.dw.Abort()
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("discarding %s object: %w", p.t, err)
	}
	return nil
}
