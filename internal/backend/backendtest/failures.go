package backendtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
)

// failingReader returns its data, then an error instead of EOF.
type failingReader struct {
	*bytes.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.Reader.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

var errReader = errors.New("the source broke")

// expectNothingStored checks that a failed Save left no trace of h.
func expectNothingStored(t *testing.T, be backend.Backend, h backend.Handle) {
	t.Helper()
	if _, err := be.Stat(context.Background(), h); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat %s after a failed Save: %v, want fs.ErrNotExist", h, err)
	}
	if l := list(t, be, h.Type); len(l) != 0 {
		t.Errorf("List %s after a failed Save: %v", h.Type, names(l))
	}
}

func testFailingReader(t *testing.T, be backend.Backend) {
	data := randomData(7, 3<<20)
	for _, ft := range []backend.FileType{backend.ConfigFile, backend.PackFile, backend.SnapshotFile} {
		h := handle(ft, data)
		rd := &failingReader{bytes.NewReader(data[:len(data)/2]), errReader}
		err := be.Save(context.Background(), h, rd, int64(len(data)))
		if err == nil {
			t.Fatalf("Save %s from a reader that fails: no error", h)
		}
		expectNothingStored(t, be, h)
		// The failure must not block a later Save of the same name.
		save(t, be, h, data)
		if got := mustLoad(t, be, h, 0, 0); !bytes.Equal(got, data) {
			t.Errorf("%s: Save after a failed Save stored wrong data", h)
		}
	}
}

func testWrongSize(t *testing.T, be backend.Backend) {
	data := randomData(8, 10_000)
	h := handle(backend.IndexFile, data)
	if err := be.Save(context.Background(), h, bytes.NewReader(data[:9_000]), int64(len(data))); err == nil {
		t.Error("Save of a reader shorter than size: no error")
	}
	expectNothingStored(t, be, h)
	if err := be.Save(context.Background(), h, bytes.NewReader(data), int64(len(data)-1)); err == nil {
		t.Error("Save of a reader longer than size: no error")
	}
	expectNothingStored(t, be, h)
}

func testCancelledSave(t *testing.T, be backend.Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := randomData(9, 1<<20)
	h := handle(backend.PackFile, data)
	if err := be.Save(ctx, h, bytes.NewReader(data), int64(len(data))); err == nil {
		t.Error("Save with a cancelled context: no error")
	}
	expectNothingStored(t, be, h)
}
