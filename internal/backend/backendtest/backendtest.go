// Package backendtest is the conformance suite every backend passes: the
// contract of package backend, checked the same way for each
// implementation. A backend's own tests call Run with a constructor that
// returns a fresh, empty backend.
package backendtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
)

// Run checks that the backends newBackend returns keep the backend
// contract. newBackend is called once per subtest and must return an empty
// backend; Run closes it.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, be backend.Backend)
	}{
		{"RoundTripEveryType", testRoundTrip},
		{"ListEmpty", testListEmpty},
		{"RangedLoad", testRangedLoad},
		{"RangePastEnd", testRangePastEnd},
		{"SaveExisting", testSaveExisting},
		{"Missing", testMissing},
		{"ConcurrentDistinct", testConcurrentDistinct},
		{"ConcurrentIdentical", testConcurrentIdentical},
		{"FailingReader", testFailingReader},
		{"WrongSize", testWrongSize},
		{"ReadsFromCurrentPosition", testCurrentPosition},
		{"CallerBuffersNotShared", testBuffersNotShared},
		{"Empty", testEmpty},
		{"Large", testLarge},
		{"ListStopsOnError", testListStops},
		{"CancelledSave", testCancelledSave},
		{"Stream", testStream},
		{"ReadAll", testReadAll},
		{"ListNames", testListNames},
		{"WholeReader", testWholeReader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Parallel: a durable store spends most of each test waiting
			// for syncs or round trips, and the tests share nothing.
			t.Parallel()
			be := newBackend(t)
			t.Cleanup(func() {
				if err := be.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, be)
		})
	}
}

// fileTypes are all object types of a repository.
var fileTypes = append([]backend.FileType{backend.ConfigFile}, backend.ObjectTypes()...)

// randomData returns n pseudo-random bytes determined by seed.
func randomData(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x6e657374))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// handle names data as the repository would: config has its fixed name,
// WAL objects a WAL file name, everything else the SHA-256 of the bytes.
func handle(t backend.FileType, data []byte) backend.Handle {
	switch t {
	case backend.ConfigFile:
		return backend.Handle{Type: t, Name: "config"}
	case backend.WALFile:
		sum := sha256.Sum256(data)
		return backend.Handle{Type: t, Name: fmt.Sprintf("00000001%016X", sum[:8])}
	}
	sum := sha256.Sum256(data)
	return backend.Handle{Type: t, Name: hex.EncodeToString(sum[:])}
}

func save(t *testing.T, be backend.Backend, h backend.Handle, data []byte) {
	t.Helper()
	if err := be.Save(context.Background(), h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Save %s: %v", h, err)
	}
}

// load reads a range and returns the bytes and the error of Load or of
// reading, whichever happened.
func load(be backend.Backend, h backend.Handle, offset, length int64) ([]byte, error) {
	rd, err := be.Load(context.Background(), h, offset, length)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rd)
	if cerr := rd.Close(); err == nil {
		err = cerr
	}
	return b, err
}

func mustLoad(t *testing.T, be backend.Backend, h backend.Handle, offset, length int64) []byte {
	t.Helper()
	b, err := load(be, h, offset, length)
	if err != nil {
		t.Fatalf("Load %s [%d, +%d): %v", h, offset, length, err)
	}
	return b
}

func list(t *testing.T, be backend.Backend, ft backend.FileType) map[string]backend.FileInfo {
	t.Helper()
	m := make(map[string]backend.FileInfo)
	err := be.List(context.Background(), ft, func(fi backend.FileInfo) error {
		if _, dup := m[fi.Name]; dup {
			t.Errorf("List %s reports %s twice", ft, fi.Name)
		}
		m[fi.Name] = fi
		return nil
	})
	if err != nil {
		t.Fatalf("List %s: %v", ft, err)
	}
	return m
}

func names(m map[string]backend.FileInfo) []string {
	var s []string
	for n := range m {
		s = append(s, n)
	}
	slices.Sort(s)
	return s
}

func checkModTime(t *testing.T, what string, mt time.Time) {
	t.Helper()
	if d := time.Since(mt); d < -time.Minute || d > time.Minute {
		t.Errorf("%s: ModTime %v is not within a minute of now", what, mt)
	}
}
