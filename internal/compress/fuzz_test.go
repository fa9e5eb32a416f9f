package compress

import "testing"

func FuzzDecompress(f *testing.F) {
	c := NewCodec(Fastest)
	for _, src := range [][]byte{nil, []byte("hello hello hello hello"), textData(5000), make([]byte, 100000)} {
		out, _ := c.Compress(nil, src)
		f.Add(out, 100000)
		f.Add(out, 10)
	}
	f.Add(streamFrame(f, make([]byte, 300<<10)), 400<<10)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0}, 100)
	f.Fuzz(func(t *testing.T, src []byte, maxLen int) {
		maxLen = max(0, maxLen%(1<<20))
		got, err := c.Decompress(nil, src, maxLen)
		if err != nil {
			return
		}
		if len(got) > maxLen {
			t.Fatalf("decoded %d bytes, over the limit of %d", len(got), maxLen)
		}
		// What decodes must survive a round trip.
		out, _ := c.Compress(nil, got)
		back, err := c.Decompress([]byte{1}, out, len(got))
		if err != nil || len(back) != len(got)+1 || string(back[1:]) != string(got) {
			t.Fatalf("round trip of %d decoded bytes: %d bytes, %v", len(got), len(back), err)
		}
	})
}
