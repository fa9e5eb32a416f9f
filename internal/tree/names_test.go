package tree

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// A tree written by a Go whose Unicode tables differ from this one's
// (U+1C89 is printable from Unicode 16 on, so strconv.Quote then writes it
// as it is instead of \u1c89) still reads: name is checked by unescaping
// it, not by escaping name_bytes again with this binary's tables.
func TestDecodeEscapedNameOfOtherUnicodeVersion(t *testing.T) {
	raw := "\xff\u1c89"
	for _, shown := range []string{`\\xff\\u1c89`, `\\xff` + "\u1c89"} {
		for _, b := range []string{
			fmt.Sprintf(`{"nodes":[{"name":"%s","type":"file","mode":0,"mtime":"0001-01-01T00:00:00Z","uid":0,"gid":0,"name_bytes":"%s"}]}`,
				shown, base64.StdEncoding.EncodeToString([]byte(raw))),
			fmt.Sprintf(`{"nodes":[{"name":"l","type":"symlink","mode":0,"mtime":"0001-01-01T00:00:00Z","uid":0,"gid":0,"link_target":"%s","link_target_bytes":"%s"}]}`,
				shown, base64.StdEncoding.EncodeToString([]byte(raw))),
		} {
			tr, err := Decode([]byte(b))
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if n := tr.Nodes[0]; n.Name != raw && n.LinkTarget != raw {
				t.Errorf("%s: decoded %q %q", b, n.Name, n.LinkTarget)
			}
			if slow, err := decodeJSON([]byte(b)); err != nil || !slow.Equal(tr) {
				t.Errorf("encoding/json: %v", err)
			}
		}
	}
}

// Hostile or odd names round trip: every byte, escape look-alikes, 255
// bytes, newlines in link targets, 10,000 entries.
func TestNamesEveryByte(t *testing.T) {
	tr := &Tree{}
	seen := map[string]bool{}
	add := func(name, target string) {
		if seen[name] {
			return
		}
		seen[name] = true
		n := &Node{Name: name, Type: File}
		if target != "" {
			n.Type, n.LinkTarget = Symlink, target
		}
		tr.Nodes = append(tr.Nodes, n)
	}
	for c := 1; c < 256; c++ {
		if c == '/' || c == '.' {
			continue
		}
		add(string([]byte{byte(c)}), "")
		add("x"+string([]byte{byte(c)})+`\x`+fmt.Sprintf("%02x", c), "t\n"+string([]byte{byte(c)}))
		add("y"+fmt.Sprintf(`\x%02x`, c), "")
		add(`"\`+string([]byte{byte(c), 0xc3}), `\"`+string([]byte{byte(c)}))
	}
	add(strings.Repeat("\xff", 255), strings.Repeat("\n\xfe", 2000))
	add(strings.Repeat("\u00df", 127)+"\xdf", "")
	for i := range 10000 {
		add(fmt.Sprintf("z%05d\xe9\\", i), "")
	}
	tr.Sort()
	b, err := Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil || !got.Equal(tr) {
		t.Fatalf("%v", err)
	}
	if _, ok := decodeFast(b); !ok {
		t.Log("fast decoder declined")
	}
}
