package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
)

func testRoundTrip(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	for i, ft := range fileTypes {
		data := randomData(uint64(i), 1000+i*37)
		h := handle(ft, data)
		save(t, be, h, data)

		if got := mustLoad(t, be, h, 0, 0); !bytes.Equal(got, data) {
			t.Errorf("%s: Load returned %d bytes that differ from the %d saved", h, len(got), len(data))
		}
		fi, err := be.Stat(ctx, h)
		if err != nil {
			t.Fatalf("Stat %s: %v", h, err)
		}
		if fi.Name != h.Name || fi.Size != int64(len(data)) {
			t.Errorf("Stat %s = {%q, %d}, want {%q, %d}", h, fi.Name, fi.Size, h.Name, len(data))
		}
		checkModTime(t, "Stat "+h.String(), fi.ModTime)

		l := list(t, be, ft)
		if len(l) != 1 || l[h.Name].Size != int64(len(data)) {
			t.Errorf("List %s = %v, want only %s with size %d", ft, l, h.Name, len(data))
		}
		checkModTime(t, "List "+h.String(), l[h.Name].ModTime)

		if err := be.Remove(ctx, h); err != nil {
			t.Fatalf("Remove %s: %v", h, err)
		}
		if _, err := be.Stat(ctx, h); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat %s after Remove: %v, want fs.ErrNotExist", h, err)
		}
		if l := list(t, be, ft); len(l) != 0 {
			t.Errorf("List %s after Remove: %v", ft, names(l))
		}
	}
}

func testListEmpty(t *testing.T, be backend.Backend) {
	for _, ft := range fileTypes {
		if l := list(t, be, ft); len(l) != 0 {
			t.Errorf("List %s of an empty backend: %v", ft, names(l))
		}
	}
}

func testSaveExisting(t *testing.T, be backend.Backend) {
	for i, ft := range []backend.FileType{backend.ConfigFile, backend.PackFile, backend.WALFile} {
		orig := randomData(uint64(10+i), 500)
		h := handle(ft, orig)
		save(t, be, h, orig)
		other := randomData(uint64(20+i), 700)
		err := be.Save(context.Background(), h, bytes.NewReader(other), int64(len(other)))
		if !errors.Is(err, fs.ErrExist) {
			t.Errorf("second Save of %s: %v, want an error wrapping fs.ErrExist", h, err)
		}
		if got := mustLoad(t, be, h, 0, 0); !bytes.Equal(got, orig) {
			t.Errorf("%s: a failed second Save changed the stored object", h)
		}
		if l := list(t, be, ft); len(l) != 1 {
			t.Errorf("List %s after a second Save: %v", ft, names(l))
		}
	}
}

func testMissing(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	// Another object of the same type exists, so the type's directory or
	// prefix does too: missing must mean the object, not the container.
	save(t, be, handle(backend.PackFile, []byte("present")), []byte("present"))
	for _, ft := range fileTypes {
		h := handle(ft, []byte("absent"))
		if _, err := be.Load(ctx, h, 0, 0); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load of missing %s: %v, want fs.ErrNotExist", h, err)
		}
		if _, err := be.Stat(ctx, h); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat of missing %s: %v, want fs.ErrNotExist", h, err)
		}
		if err := be.Remove(ctx, h); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Remove of missing %s: %v, want fs.ErrNotExist", h, err)
		}
	}
}

func testEmpty(t *testing.T, be backend.Backend) {
	h := handle(backend.IndexFile, nil)
	save(t, be, h, nil)
	if got := mustLoad(t, be, h, 0, 0); len(got) != 0 {
		t.Errorf("empty object loaded as %d bytes", len(got))
	}
	fi, err := be.Stat(context.Background(), h)
	if err != nil || fi.Size != 0 {
		t.Errorf("Stat of empty object: %+v, %v", fi, err)
	}
	if l := list(t, be, backend.IndexFile); len(l) != 1 || l[h.Name].Size != 0 {
		t.Errorf("List with an empty object: %v", l)
	}
}

func testLarge(t *testing.T, be backend.Backend) {
	data := randomData(99, 20<<20+13)
	h := handle(backend.PackFile, data)
	save(t, be, h, data)
	if got := mustLoad(t, be, h, 0, 0); !bytes.Equal(got, data) {
		t.Fatalf("20 MiB object: loaded %d bytes that differ from the saved", len(got))
	}
	off := int64(len(data) - 5<<20)
	if got := mustLoad(t, be, h, off, 0); !bytes.Equal(got, data[off:]) {
		t.Errorf("20 MiB object: the last 5 MiB differ")
	}
	if got := mustLoad(t, be, h, 7<<20, 1<<20); !bytes.Equal(got, data[7<<20:8<<20]) {
		t.Errorf("20 MiB object: a 1 MiB range in the middle differs")
	}
	fi, err := be.Stat(context.Background(), h)
	if err != nil || fi.Size != int64(len(data)) {
		t.Errorf("Stat of 20 MiB object: %+v, %v", fi, err)
	}
}

var errStop = errors.New("stop listing")

func testListStops(t *testing.T, be backend.Backend) {
	for i := range 3 {
		d := []byte(fmt.Sprint("object ", i))
		save(t, be, handle(backend.SnapshotFile, d), d)
	}
	calls := 0
	err := be.List(context.Background(), backend.SnapshotFile, func(backend.FileInfo) error {
		calls++
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Errorf("List returned %v, want the callback's error", err)
	}
	if calls != 1 {
		t.Errorf("List called fn %d times after it failed, want 1", calls)
	}
}

func testCurrentPosition(t *testing.T, be backend.Backend) {
	data := randomData(5, 300)
	rd := bytes.NewReader(data)
	if _, err := rd.Seek(100, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	h := handle(backend.KeyFile, data[100:])
	if err := be.Save(context.Background(), h, rd, 200); err != nil {
		t.Fatalf("Save from position 100: %v", err)
	}
	if got := mustLoad(t, be, h, 0, 0); !bytes.Equal(got, data[100:]) {
		t.Errorf("Save did not store the bytes from the reader's current position")
	}
}

func testBuffersNotShared(t *testing.T, be backend.Backend) {
	data := randomData(6, 4096)
	want := bytes.Clone(data)
	h := handle(backend.PackFile, data)
	save(t, be, h, data)
	clear(data) // the caller reuses its buffer
	got := mustLoad(t, be, h, 0, 0)
	if !bytes.Equal(got, want) {
		t.Fatal("changing the caller's buffer after Save changed the stored object")
	}
	clear(got)
	if again := mustLoad(t, be, h, 0, 0); !bytes.Equal(again, want) {
		t.Error("changing loaded bytes changed the stored object")
	}
}

// testReadAll: backend.ReadAll (through the store's WholeLoader, where it
// has one) gives an object's bytes, an empty object as empty, a missing
// one as fs.ErrNotExist, and refuses one larger than its limit.
func testReadAll(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("nestguard "), 1000)
	h := handle(backend.SnapshotFile, data)
	save(t, be, h, data)
	if got, err := backend.ReadAll(ctx, be, h, int64(len(data))); err != nil || !bytes.Equal(got, data) {
		t.Errorf("ReadAll: %d bytes, %v; want the %d saved", len(got), err, len(data))
	}
	if _, err := backend.ReadAll(ctx, be, h, int64(len(data))-1); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadAll with a limit one byte short: %v, want a size error", err)
	}
	empty := handle(backend.KeyFile, nil)
	save(t, be, empty, nil)
	if got, err := backend.ReadAll(ctx, be, empty, 10); err != nil || len(got) != 0 {
		t.Errorf("ReadAll of an empty object: %q, %v", got, err)
	}
	if _, err := backend.ReadAll(ctx, be, handle(backend.SnapshotFile, []byte("absent")), 1<<20); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadAll of a missing object: %v, want fs.ErrNotExist", err)
	}
}

// testWholeReader: a backend.OpenWholeReader reader (the store's own,
// where it has one) gives each object's bytes as ReadAll does, of every
// type and size around its buffer's, into the caller's buffer or a new
// one; refuses one larger than its limit; and reports a missing one as
// fs.ErrNotExist.
func testWholeReader(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	for _, ft := range fileTypes {
		r, err := backend.OpenWholeReader(ctx, be, ft)
		if err != nil {
			t.Fatalf("OpenWholeReader(%s): %v", ft, err)
		}
		sizes := []int{0, 1, 1023, 1024, 1025, 4096, 70000}
		if ft == backend.ConfigFile {
			sizes = sizes[4:5] // one config
		}
		for i, n := range sizes {
			data := randomData(uint64(100+i), n)
			h := handle(ft, data)
			save(t, be, h, data)
			for _, buf := range [][]byte{nil, make([]byte, 0, 1024), make([]byte, 10, 1<<17)} {
				got, err := r.ReadAll(ctx, h.Name, int64(n), buf)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("WholeReader.ReadAll of %s (%d bytes) into a buffer of %d: %d bytes, %v", h, n, cap(buf), len(got), err)
				}
				if n > 0 {
					if _, err := r.ReadAll(ctx, h.Name, int64(n)-1, buf); err == nil || errors.Is(err, fs.ErrNotExist) {
						t.Errorf("WholeReader.ReadAll of %s (%d bytes), limit one byte short, into a buffer of %d: %v, want a size error", h, n, cap(buf), err)
					}
				}
			}
		}
		if ft != backend.ConfigFile {
			missing := handle(ft, []byte("absent"))
			if _, err := r.ReadAll(ctx, missing.Name, 1<<20, nil); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("WholeReader.ReadAll of a missing %s: %v, want fs.ErrNotExist", missing, err)
			}
		}
		if err := r.Close(); err != nil {
			t.Errorf("WholeReader.Close: %v", err)
		}
	}
}

// testListNames: backend.ListNames names exactly the objects List gives.
func testListNames(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	for i := range 5 {
		save(t, be, handle(backend.PackFile, []byte{byte(i)}), []byte{byte(i)})
		save(t, be, handle(backend.AuditFile, []byte{byte(i)}), []byte{byte(i)})
	}
	for _, ft := range []backend.FileType{backend.PackFile, backend.AuditFile, backend.SnapshotFile} {
		var want, got []string
		if err := be.List(ctx, ft, func(fi backend.FileInfo) error { want = append(want, fi.Name); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := backend.ListNames(ctx, be, ft, func(name string) error { got = append(got, name); return nil }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("ListNames of %s: %q, List: %q", ft, got, want)
		}
	}
}
