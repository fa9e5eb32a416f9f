//go:build cgo

package compress

import (
	"bytes"
	"testing"

	"github.com/DataDog/zstd"
)

// TestDefaultParams checks that Default's large inputs get the fast
// strategy and small ones level 3 as it is: if libzstd ignored the
// parameters, both would match plain level 3.
func TestDefaultParams(t *testing.T) {
	frame := func(cp cParams, src []byte) []byte {
		t.Helper()
		c, err := newCCtx(cp)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.compress(make([]byte, zstd.CompressBound(len(src))), src)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	enc := newEncoder(Default, 0)
	for _, tc := range []struct {
		name     string
		src      []byte
		strategy int
	}{
		{"small", textData(smallInput), 0},
		{"large", textData(smallInput + 1), zstdFast},
	} {
		got, err := enc.appendFrame(nil, tc.src)
		if err != nil {
			t.Fatal(err)
		}
		want := frame(cParams{level: 3, strategy: tc.strategy}, tc.src)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: Default's frame differs from level 3 with strategy %d", tc.name, tc.strategy)
		}
		if level3 := frame(cParams{level: 3}, tc.src); tc.strategy != 0 && bytes.Equal(got, level3) {
			t.Errorf("%s: the strategy was not applied: the frame is plain level 3's", tc.name)
		}
		dec, err := zstd.Decompress(nil, got)
		if err != nil || !bytes.Equal(dec, tc.src) {
			t.Errorf("%s: frame does not decode to its input (%v)", tc.name, err)
		}
	}
}

func TestCCtxBadParameter(t *testing.T) {
	if _, err := newCCtx(cParams{level: 3, strategy: 99}); err == nil {
		t.Fatal("strategy 99 was accepted")
	}
}
