package backendtest

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"sync"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
)

func testConcurrentDistinct(t *testing.T, be backend.Backend) {
	const n = 16
	objects := make([][]byte, n)
	for i := range objects {
		objects[i] = randomData(uint64(100+i), 64<<10+i)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, d := range objects {
		wg.Go(func() {
			errs[i] = be.Save(context.Background(), handle(backend.PackFile, d), bytes.NewReader(d), int64(len(d)))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Save %d: %v", i, err)
		}
	}
	if l := list(t, be, backend.PackFile); len(l) != n {
		t.Errorf("List after %d concurrent Saves: %d objects", n, len(l))
	}
	for _, d := range objects {
		h := handle(backend.PackFile, d)
		if got := mustLoad(t, be, h, 0, 0); !bytes.Equal(got, d) {
			t.Errorf("%s: stored data differs after concurrent Saves", h)
		}
	}
}

// testConcurrentIdentical: writers race on one name, each with different
// bytes so a mix would show. Exactly one wins, the others get fs.ErrExist,
// and the stored object is exactly the winner's.
func testConcurrentIdentical(t *testing.T, be backend.Backend) {
	const n = 8
	h := backend.Handle{Type: backend.SnapshotFile, Name: "5ca1ab1e"}
	objects := make([][]byte, n)
	for i := range objects {
		objects[i] = randomData(uint64(200+i), 256<<10)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, d := range objects {
		wg.Go(func() {
			<-start
			errs[i] = be.Save(context.Background(), h, bytes.NewReader(d), int64(len(d)))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("Saves %d and %d of the same name both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("losing Save %d: %v, want fs.ErrExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no concurrent Save of the name succeeded")
	}
	if got := mustLoad(t, be, h, 0, 0); !bytes.Equal(got, objects[winner]) {
		t.Errorf("stored object is not the winning Save's data")
	}
	if l := list(t, be, backend.SnapshotFile); len(l) != 1 {
		t.Errorf("List after racing Saves of one name: %v", names(l))
	}
}
