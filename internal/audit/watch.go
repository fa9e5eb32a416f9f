package audit

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/nestguard/nestguard/internal/backend"
)

// Written is what a command stored and removed, as Watch saw it: the
// "wrote" of its audit record, learned from the storage rather than from
// each command, so that every command is covered without saying so.
type Written struct {
	mu     sync.Mutex
	names  []string
	more   int
	counts map[string]int

	// The gate before the first removal (BeforeRemove).
	gateMu   sync.Mutex
	gate     func(context.Context, backend.Handle) error
	gateDone bool
	gateErr  error
}

// BeforeRemove makes fn run once, before the first object other than an
// audit entry or a lock is removed through the watched store, and wait
// for it: the hook that appends a command's Started record. If fn fails,
// that removal and every later one fail with its error, and the store
// removes nothing.
func (w *Written) BeforeRemove(fn func(ctx context.Context, first backend.Handle) error) {
	w.gateMu.Lock()
	defer w.gateMu.Unlock()
	w.gate = fn
}

// pass runs the gate before removing h.
func (w *Written) pass(ctx context.Context, h backend.Handle) error {
	if h.Type == backend.AuditFile || h.Type == backend.LockFile {
		return nil
	}
	w.gateMu.Lock()
	defer w.gateMu.Unlock()
	if w.gate == nil || w.gateDone {
		return w.gateErr
	}
	w.gateDone = true
	w.gateErr = w.gate(ctx, h)
	return w.gateErr
}

// maxWrittenNames bounds the objects a record lists by name (a copy of a
// month of WAL writes thousands); the rest are counted.
const maxWrittenNames = 1000

// counted are the types a record counts instead of listing: packs and
// index objects say nothing the snapshot does not.
func counted(t backend.FileType) bool { return t == backend.PackFile || t == backend.IndexFile }

func (w *Written) add(h backend.Handle, prefix string) {
	if h.Type == backend.AuditFile {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if counted(h.Type) {
		if w.counts == nil {
			w.counts = make(map[string]int)
		}
		w.counts[prefix+string(h.Type)]++
		return
	}
	if len(w.names) == maxWrittenNames {
		w.more++
		return
	}
	w.names = append(w.names, prefix+h.String())
}

// List returns the objects written ("snapshots/<id>"), removed
// ("-snapshots/<id>") and counted ("data: 3 objects"), in that order.
func (w *Written) List() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]string(nil), w.names...)
	if w.more > 0 {
		out = append(out, fmt.Sprintf("and %d more objects", w.more))
	}
	for _, t := range []string{"data", "index", "-data", "-index"} {
		if n := w.counts[t]; n > 0 {
			out = append(out, fmt.Sprintf("%s: %d objects", t, n))
		}
	}
	return out
}

// Watch returns be wrapped so that every object saved or removed through
// it is noted in the returned Written. The wrapper keeps be's capabilities
// (backend.As finds them through Unwrap; a Streamer stays one). Its Close
// does not close be: whoever watches writes the record with be after the
// command has closed its repository, and closes be then.
func Watch(be backend.Backend) (backend.Backend, *Written) {
	w := &Written{}
	r := &watched{be: be, w: w}
	if st, ok := be.(backend.Streamer); ok {
		return &watchedStreamer{watched: r, st: st}, w
	}
	return r, w
}

type watched struct {
	be backend.Backend
	w  *Written
}

func (r *watched) Location() string        { return r.be.Location() }
func (r *watched) Unwrap() backend.Backend { return r.be }
func (r *watched) Close() error            { return nil }

func (r *watched) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	err := r.be.Save(ctx, h, rd, size)
	if err == nil {
		r.w.add(h, "")
	}
	return err
}

// SaveDeferred implements backend.DeferredSaver with the watched store's,
// or with Save where it has none.
func (r *watched) SaveDeferred(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	ds, ok := backend.As[backend.DeferredSaver](r.be)
	if !ok {
		return r.Save(ctx, h, rd, size)
	}
	err := ds.SaveDeferred(ctx, h, rd, size)
	if err == nil {
		r.w.add(h, "")
	}
	return err
}

// SyncNames implements backend.DeferredSaver.
func (r *watched) SyncNames(ctx context.Context, hs []backend.Handle) error {
	if ds, ok := backend.As[backend.DeferredSaver](r.be); ok {
		return ds.SyncNames(ctx, hs)
	}
	return nil
}

// ListNames implements backend.NameLister, as LoadAll does WholeLoader.
func (r *watched) ListNames(ctx context.Context, t backend.FileType, fn func(string) error) error {
	return backend.ListNames(ctx, r.be, t, fn)
}

// LoadAll implements backend.WholeLoader: reads are not watched, so the
// store's own whole-object read serves.
func (r *watched) LoadAll(ctx context.Context, h backend.Handle, limit int64) ([]byte, error) {
	return backend.ReadAll(ctx, r.be, h, limit)
}

// OpenWholeReader implements backend.WholeReaderOpener, as LoadAll does
// WholeLoader.
func (r *watched) OpenWholeReader(ctx context.Context, t backend.FileType) (backend.WholeReader, error) {
	return backend.OpenWholeReader(ctx, r.be, t)
}

func (r *watched) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	return r.be.Load(ctx, h, offset, length)
}

func (r *watched) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	return r.be.Stat(ctx, h)
}

func (r *watched) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	return r.be.List(ctx, t, fn)
}

func (r *watched) Remove(ctx context.Context, h backend.Handle) error {
	if err := r.w.pass(ctx, h); err != nil {
		return err
	}
	err := r.be.Remove(ctx, h)
	if err == nil {
		r.w.add(h, "-")
	}
	return err
}

type watchedStreamer struct {
	*watched
	st backend.Streamer
}

func (r *watchedStreamer) Create(ctx context.Context, t backend.FileType) (backend.PendingObject, error) {
	po, err := r.st.Create(ctx, t)
	if err != nil {
		return nil, err
	}
	return &watchedPending{PendingObject: po, t: t, w: r.w}, nil
}

type watchedPending struct {
	backend.PendingObject
	t backend.FileType
	w *Written
}

// Lend passes lending on (backend.Lender): nil if the object does not lend.
func (p *watchedPending) Lend(n int) []byte {
	if l, ok := p.PendingObject.(backend.Lender); ok {
		return l.Lend(n)
	}
	return nil
}

func (p *watchedPending) Commit(ctx context.Context, name string) error {
	err := p.PendingObject.Commit(ctx, name)
	if err == nil {
		p.w.add(backend.Handle{Type: p.t, Name: name}, "")
	}
	return err
}
