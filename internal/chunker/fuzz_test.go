package chunker

import (
	"bytes"
	"io"
	"slices"
	"testing"
)

// FuzzNext checks, for any input and any pattern of short reads, that the
// chunks reassemble the input, respect the bounds and sit where the plain
// reference cut puts them.
func FuzzNext(f *testing.F) {
	f.Add([]byte("hello"), []byte{1, 2, 3}, byte(0))
	f.Add(randomData(3000, 1), []byte{0, 255, 7}, byte(1))
	f.Add(make([]byte, 10000), []byte{}, byte(2))
	f.Fuzz(func(t *testing.T, data, pattern []byte, seed byte) {
		p := Params{Min: 64, Avg: 256, Max: 1024}
		want := refCut(data, p, testSeed(seed))
		sizes := make([]int, len(pattern))
		for i, b := range pattern {
			sizes[i] = int(b) * 5
			// Single empty reads are fine; long runs of them rightly
			// trip the no-progress guard.
			if sizes[i] == 0 && i > 0 && sizes[i-1] == 0 {
				sizes[i] = 1
			}
		}
		if len(sizes) > 0 && sizes[0] == 0 && sizes[len(sizes)-1] == 0 {
			sizes[0] = 1
		}
		rd := &patternReader{data: data, pattern: sizes}
		s := newCDC(rd, p, testSeed(seed), 1+int(seed)%2000)
		var cs [][]byte
		buf := make([]byte, 0, int(seed)*5)
		for {
			c, err := s.Next(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
			buf = nil
		}
		checkChunks(t, data, cs, p)
		if got := lengths(cs); !slices.Equal(got, want) {
			t.Fatalf("boundaries %v, reference %v", got, want)
		}
		if _, err := s.Next(nil); err != io.EOF {
			t.Fatalf("Next after the end returned %v, want io.EOF", err)
		}
		if !bytes.Equal(bytes.Join(cs, nil), data) {
			t.Fatal("chunks do not reassemble the input")
		}
	})
}
