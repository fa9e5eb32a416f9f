package backendtest

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
)

// testStream checks a backend.Streamer, if the backend is one: objects
// written in pieces read back whole, stay invisible until committed, never
// replace a stored object, and leave nothing when aborted.
func testStream(t *testing.T, be backend.Backend) {
	st, ok := be.(backend.Streamer)
	if !ok {
		t.Skip("not a backend.Streamer")
	}
	ctx := context.Background()
	data := randomData(7, 3<<20+5)
	h := handle(backend.PackFile, data)

	po, err := st.Create(ctx, backend.PackFile)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1<<20-3)
		if _, err := po.Write(rest[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		rest = rest[n:]
	}
	if got := list(t, be, backend.PackFile); len(got) != 0 {
		t.Fatalf("uncommitted object listed: %v", names(got))
	}
	if err := po.Commit(ctx, h.Name); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got := mustLoad(t, be, h, 0, 0); !bytes.Equal(got, data) {
		t.Fatalf("streamed object read back %d bytes, differing from the %d written", len(got), len(data))
	}
	if err := po.Abort(); err != nil {
		t.Errorf("Abort after Commit: %v", err)
	}

	// A second object under the same name is refused; the first stays.
	po, err = st.Create(ctx, backend.PackFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := po.Write([]byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := po.Commit(ctx, h.Name); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Commit over a stored object: %v, want fs.ErrExist", err)
	}
	if got := mustLoad(t, be, h, 0, 0); !bytes.Equal(got, data) {
		t.Fatal("Commit over a stored object changed it")
	}

	po, err = st.Create(ctx, backend.PackFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := po.Write([]byte("discarded")); err != nil {
		t.Fatal(err)
	}
	if err := po.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if got := list(t, be, backend.PackFile); len(got) != 1 {
		t.Fatalf("after Abort %d packs listed, want 1", len(got))
	}
	if _, err := po.Write([]byte("x")); err == nil {
		t.Error("Write after Abort succeeded")
	}
}
