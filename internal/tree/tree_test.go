package tree

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
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

// TestNodeEqualCoversEveryField fails when a field is added to Node but not
// to Equal: the archiver reuses a parent's tree when Equal says nothing
// changed, so a field Equal ignores would keep stale metadata.
func TestNodeEqualCoversEveryField(t *testing.T) {
	base := func() *Node {
		sub := id.Hash([]byte("sub"))
		return &Node{Name: "n", Type: File, ModTime: time.Unix(5, 0), Content: []id.ID{id.Hash([]byte("c"))}, Subtree: &sub}
	}
	if !base().Equal(base()) {
		t.Fatal("equal nodes compare unequal")
	}
	v := reflect.ValueOf(base()).Elem()
	for i := range v.NumField() {
		n := base()
		f := reflect.ValueOf(n).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		case reflect.Struct: // time.Time
			f.Set(reflect.ValueOf(time.Unix(7, 1)))
		case reflect.Slice:
			switch f.Interface().(type) {
			case []id.ID:
				f.Set(reflect.ValueOf([]id.ID{id.Hash([]byte("other"))}))
			case []Xattr:
				f.Set(reflect.ValueOf([]Xattr{{Name: []byte("user.a"), Value: []byte("1")}}))
			default:
				t.Fatalf("field %s: slice type %s not covered by this test", v.Type().Field(i).Name, f.Type())
			}
		case reflect.Pointer:
			other := id.Hash([]byte("other"))
			f.Set(reflect.ValueOf(&other))
		default:
			t.Fatalf("field %s: kind %s not covered by this test", v.Type().Field(i).Name, f.Kind())
		}
		if n.Equal(base()) || base().Equal(n) {
			t.Errorf("Equal ignores field %s", v.Type().Field(i).Name)
		}
	}
	// Locations differ, instants do not: the same time.
	a, b := base(), base()
	b.ModTime = a.ModTime.UTC()
	if !a.Equal(b) {
		t.Error("the same instant in two locations compares unequal")
	}
	b.Subtree = nil
	if a.Equal(b) || b.Equal(a) {
		t.Error("a nil subtree equals a set one")
	}
	// Extended attributes compare by name and value.
	a, b = base(), base()
	a.Xattrs = []Xattr{{Name: []byte("user.a"), Value: []byte("1")}}
	b.Xattrs = []Xattr{{Name: []byte("user.a"), Value: []byte("2")}}
	if a.Equal(b) {
		t.Error("extended attributes with different values compare equal")
	}
	b.Xattrs[0].Value = []byte("1")
	if !a.Equal(b) {
		t.Error("equal extended attributes compare unequal")
	}
}

func TestXattrsRoundTripAndChecks(t *testing.T) {
	sub := id.Hash([]byte("sub"))
	xs := []Xattr{{Name: []byte("system.posix_acl_access"), Value: []byte{2, 0, 0, 0, 1, 0, 6, 0}}, {Name: []byte("user.\xfe"), Value: []byte{}}}
	tr := &Tree{Nodes: []*Node{{Name: "d", Type: Dir, Subtree: &sub, Xattrs: xs}}}
	b, err := Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(tr) {
		t.Fatalf("round trip changed the extended attributes: %s", b)
	}
	for _, bad := range [][]Xattr{
		{{Name: []byte("user.b")}, {Name: []byte("user.a")}},
		{{Name: []byte("user.a")}, {Name: []byte("user.a")}},
		{{Name: []byte("")}},
		{{Name: []byte("user.\x00")}},
	} {
		tr.Nodes[0].Xattrs = bad
		if _, err := Encode(tr); err == nil {
			t.Errorf("encoded extended attributes %q", bad)
		}
	}
	if _, err := Decode([]byte(`{"nodes":[{"name":"f","type":"file","xattrs":[{"name":"Yg==","value":""},{"name":"YQ==","value":""}]}]}`)); err == nil {
		t.Error("decoded unsorted extended attributes")
	}
}

// Names are bytes: names that are not UTF-8 beside UTF-8 ones, and link
// targets that are not, encode and decode exactly, sorted by their bytes.
func TestNonUTF8Names(t *testing.T) {
	sub := id.Hash([]byte("sub"))
	names := []string{
		"Stra\xdfe.txt",           // Latin-1
		"Stra\u00dfe.txt",         // the same name in UTF-8
		"Stra\ufffde.txt",         // what encoding/json made of the first
		"\xff\xfe",                // bytes never in UTF-8
		"lone-\xe9",               // a truncated sequence
		`back\xdfslash\` + "\xff", // a backslash and \xdf as text
		`back\xdfslash\`,          // the same name's text, valid UTF-8
		"dir-\xe9",
		"link",
	}
	tr := &Tree{}
	for _, n := range names {
		nd := &Node{Name: n, Type: File}
		switch n {
		case "dir-\xe9":
			nd.Type, nd.Subtree = Dir, &sub
		case "link":
			nd.Type, nd.LinkTarget = Symlink, "../\xe9t\xe9/\xff"
		}
		tr.Nodes = append(tr.Nodes, nd)
	}
	tr.Sort()
	b, err := Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"name":"Stra\\xdfe.txt","type":"file","mode":0,"mtime":"0001-01-01T00:00:00Z","uid":0,"gid":0,"name_bytes":"U3RyYd9lLnR4dA=="`)) {
		t.Errorf("encoding of a Latin-1 name: %s", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if !got.Equal(tr) {
		t.Fatalf("decoded\n%q\nwant\n%q", nodeNames(got), nodeNames(tr))
	}
	for _, n := range names {
		if f := got.Find(n); f == nil || f.Name != n {
			t.Errorf("Find(%q) = %v", n, f)
		}
	}
	if l := got.Find("link"); l.LinkTarget != "../\xe9t\xe9/\xff" {
		t.Errorf("link target %q", l.LinkTarget)
	}
	// The encoding/json fallback reads the same.
	slow, err := decodeJSON(b)
	if err != nil || !slow.Equal(tr) {
		t.Fatalf("encoding/json: %v %q", err, nodeNames(slow))
	}
}

func nodeNames(t *Tree) []string {
	var s []string
	for _, n := range t.Nodes {
		s = append(s, n.Name)
	}
	return s
}

// Encode refuses what Decode would refuse, so a backup never stores a tree
// it cannot read.
func TestEncodeRefusesUnreadable(t *testing.T) {
	sub := id.Hash([]byte("sub"))
	for name, tr := range map[string]*Tree{
		"bad name":  {Nodes: []*Node{{Name: "a/b", Type: File}}},
		"duplicate": {Nodes: []*Node{{Name: "a\xff", Type: File}, {Name: "a\xff", Type: File}}},
		"unsorted":  {Nodes: []*Node{{Name: "\xff", Type: File}, {Name: "a", Type: File}}},
		"no type":   {Nodes: []*Node{{Name: "a"}}},
		"dir":       {Nodes: []*Node{{Name: "a", Type: Dir}}},
		"null":      {Nodes: []*Node{nil}},
	} {
		if b, err := Encode(tr); err == nil {
			t.Errorf("%s: encoded %s", name, b)
		}
	}
	if _, err := Encode(&Tree{Nodes: []*Node{{Name: "a", Type: Dir, Subtree: &sub}}}); err != nil {
		t.Fatal(err)
	}
}

func TestShow(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/hosts":        "/etc/hosts",
		"/a b/Straße":       "/a b/Straße",
		"/Stra\xdfe.txt":    `"/Stra\xdfe.txt"`,
		"/new\nline":        `"/new\nline"`,
		`/back\slash`:       `/back\slash`,
		"/\xff\xfe/x\"y":    `"/\xff\xfe/x\"y"`,
		"/zero\u200bwidth":  `"/zero\u200bwidth"`,
		"/tab\there\x7fdel": `"/tab\there\x7fdel"`,
	} {
		if got := Show(in); got != want {
			t.Errorf("Show(%q) = %s, want %s", in, got, want)
		}
	}
	if s, b := ForJSON("/a\xff"); s != `/a\xff` || string(b) != "/a\xff" {
		t.Errorf("ForJSON: %q %q", s, b)
	}
	if s, b := ForJSON("/a"); s != "/a" || b != nil {
		t.Errorf("ForJSON: %q %q", s, b)
	}
}

func TestMapIDs(t *testing.T) {
	a, b, sub := id.Hash([]byte("a")), id.Hash([]byte("b")), id.Hash([]byte("sub"))
	orig := &Tree{Nodes: []*Node{
		{Name: "d", Type: Dir, Subtree: &sub},
		{Name: "f", Type: File, Size: 2, Content: []id.ID{a, b}},
	}}
	flip := func(x id.ID) (id.ID, error) { return id.Hash(x[:]), nil }
	got, err := orig.MapIDs(flip, flip)
	if err != nil {
		t.Fatal(err)
	}
	wa, _ := flip(a)
	wb, _ := flip(b)
	ws, _ := flip(sub)
	if *got.Nodes[0].Subtree != ws || got.Nodes[1].Content[0] != wa || got.Nodes[1].Content[1] != wb || got.Nodes[1].Size != 2 {
		t.Errorf("mapped: %+v %+v", got.Nodes[0], got.Nodes[1])
	}
	if *orig.Nodes[0].Subtree != sub || orig.Nodes[1].Content[0] != a {
		t.Error("the original tree was changed")
	}
	_, err = orig.MapIDs(func(id.ID) (id.ID, error) { return id.Null, errors.New("gone") }, flip)
	if err == nil || !strings.Contains(err.Error(), "f: gone") {
		t.Errorf("error: %v", err)
	}
}
