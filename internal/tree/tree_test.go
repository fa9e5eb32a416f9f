package tree

import (
	"bytes"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/id"
)

func TestEncodeDecode(t *testing.T) {
	sub := id.Hash([]byte("sub"))
	tr := &Tree{Nodes: []*Node{
		{Name: "b", Type: File, Size: 3, Content: []id.ID{id.Hash([]byte("c"))}, ModTime: time.Unix(1, 5).UTC()},
		{Name: "a", Type: Dir, Subtree: &sub},
	}}
	if _, err := Encode(tr); err == nil {
		t.Fatal("encoded unsorted tree")
	}
	tr.Sort()
	b, err := Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Find("b") == nil || got.Find("b").Content[0] != tr.Nodes[1].Content[0] || got.Find("zz") != nil {
		t.Fatalf("round trip lost data: %+v", got.Nodes)
	}
}

func TestDecodeRejectsEscapes(t *testing.T) {
	for _, name := range []string{"..", ".", "a/b", "", "x\x00"} {
		b := []byte(`{"nodes":[{"name":` + quote(name) + `,"type":"file"}]}`)
		if _, err := Decode(b); err == nil {
			t.Errorf("accepted name %q", name)
		}
	}
	if _, err := Decode([]byte(`{"nodes":[{"name":"d","type":"dir"}]}`)); err == nil {
		t.Error("accepted a directory without subtree")
	}
}

func quote(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, c := range []byte(s) {
		if c < 0x20 {
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&15])
			continue
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"nodes":[{"name":"a","type":"file","content":["` + id.Hash(nil).String() + `"]}]}`))
	f.Add([]byte(`{"nodes":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := Encode(tr)
		if err != nil {
			t.Fatalf("decoded tree does not encode: %v", err)
		}
		if _, err := Decode(enc); err != nil {
			t.Fatalf("re-encoded tree does not decode: %v", err)
		}
	})
}
