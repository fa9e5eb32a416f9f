package tree

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/id"
)

// encodeJSON is how Encode wrote trees before appendTree: encoding/json,
// the reference whose bytes appendTree must give for every tree.
func encodeJSON(t *Tree) ([]byte, error) {
	var v any = t
	if slices.ContainsFunc(t.Nodes, needsWire) {
		v = toWire(t)
	}
	return json.Marshal(v)
}

// oddPieces are what random strings are made of: ASCII, control
// characters, what encoding/json escapes for HTML, U+2028/U+2029, bytes
// that are not UTF-8, backslashes and quotes (which Escape doubles), and
// multi-byte characters, some not printable.
var oddPieces = []string{
	"a", "Z", "0", ".", " ", "é", "€", "𝄞", "\x00", "\x01", "\b", "\f", "\n", "\r", "\t", "\x1f", "\x7f",
	"<", ">", "&", "\u2028", "\u2029", "\\", "\"", "'", "/", "\xff", "\xdf", "\xe2\x80", "\xc0\xaf",
	"\xed\xa0\x80", "\u00ad", "\u200b", "\ufeff", "\ufffd", "\U0010ffff", "%", "+", "=",
}

func oddString(r *rand.Rand) string {
	if r.IntN(6) == 0 {
		return ""
	}
	var b []byte
	for range r.IntN(12) + 1 {
		b = append(b, oddPieces[r.IntN(len(oddPieces))]...)
	}
	return string(b)
}

func oddBytes(r *rand.Rand) []byte {
	switch r.IntN(5) {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	b := make([]byte, r.IntN(40))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func oddTime(r *rand.Rand) time.Time {
	switch r.IntN(8) {
	case 0:
		return time.Time{}
	case 1: // out of RFC 3339's range: both encoders must refuse
		return time.Date(10000+r.IntN(5), 1, 1, 0, 0, 0, 0, time.UTC)
	case 2:
		return time.Date(-1-r.IntN(5), 1, 1, 0, 0, 0, 0, time.UTC)
	case 3: // an offset with seconds, or one of a day or more
		return time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(time.FixedZone("z", r.IntN(200000)-100000))
	case 4:
		return time.Unix(r.Int64N(4e9), 0).Local()
	}
	return time.Unix(r.Int64N(4e9)-2e9, r.Int64N(1e9)).UTC()
}

func oddUint(r *rand.Rand) uint64 {
	switch r.IntN(3) {
	case 0:
		return 0
	case 1:
		return r.Uint64N(1000)
	}
	return r.Uint64()
}

// oddNode sets each field or leaves it unset at random.
func oddNode(r *rand.Rand) *Node {
	types := []string{File, Dir, Symlink, Dev, CharDev, FIFO, Socket, "", "<odd>"}
	n := &Node{
		Name: oddString(r), Type: types[r.IntN(len(types))], Mode: fs.FileMode(r.Uint32()),
		ModTime: oddTime(r), ChangeTime: oddTime(r), UID: uint32(oddUint(r)), GID: uint32(oddUint(r)),
		User: oddString(r), Group: oddString(r), Inode: oddUint(r), DeviceID: oddUint(r),
		Links: oddUint(r), Size: oddUint(r), LinkTarget: oddString(r), Rdev: oddUint(r),
	}
	switch r.IntN(3) {
	case 1:
		n.Content = []id.ID{}
	case 2:
		for range r.IntN(5) + 1 {
			n.Content = append(n.Content, id.Hash(fmt.Appendf(nil, "%d", r.Int())))
		}
	}
	if r.IntN(2) == 0 {
		sub := id.Hash(fmt.Appendf(nil, "%d", r.Int()))
		n.Subtree = &sub
	}
	switch r.IntN(3) {
	case 1:
		n.Xattrs = []Xattr{}
	case 2:
		for range r.IntN(4) + 1 {
			n.Xattrs = append(n.Xattrs, Xattr{Name: oddBytes(r), Value: oddBytes(r)})
		}
	}
	return n
}

func oddTree(r *rand.Rand) *Tree {
	t := &Tree{}
	switch r.IntN(8) {
	case 0: // nil: {"nodes":null}
		return t
	case 1:
		t.Nodes = []*Node{}
		return t
	}
	for range r.IntN(6) + 1 {
		t.Nodes = append(t.Nodes, oddNode(r))
	}
	return t
}

// sameAsJSON fails unless appendTree gives encoding/json's bytes for tr,
// or both refuse it.
func sameAsJSON(t *testing.T, tr *Tree) {
	t.Helper()
	want, wantErr := encodeJSON(tr)
	got, gotErr := appendTree(nil, tr)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("encoding/json error %v, appendTree error %v", wantErr, gotErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("appendTree differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

// TestAppendTreeMatchesJSON: on random trees with odd names and every
// field set or unset, appendTree writes exactly what encoding/json wrote,
// so that tree IDs (hashes of these bytes) stay those of older snapshots.
func TestAppendTreeMatchesJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 8))
	for range 20000 {
		sameAsJSON(t, oddTree(r))
	}
	for _, n := range []int{0, 1, 7, 100} {
		sameAsJSON(t, sampleTree(r, n))
	}
}

// TestEncodeUnchanged pins the bytes of one tree with every field, so
// that a change of both encoders at once (a new Go) is noticed too.
func TestEncodeUnchanged(t *testing.T) {
	sub := id.Hash([]byte("s"))
	tr := &Tree{Nodes: []*Node{
		{Name: "a<&>\u2028\t", Type: Dir, Mode: fs.ModeDir | 0o755, ModTime: time.Unix(1, 5).UTC(),
			UID: 1, GID: 2, Subtree: &sub},
		{Name: "b\xff", Type: Symlink, Mode: 0o777, ModTime: time.Unix(2, 0).In(time.FixedZone("", 3600)),
			ChangeTime: time.Unix(3, 0).UTC(), User: "u", Group: "g", Inode: 4, DeviceID: 5, Links: 6,
			Size: 7, LinkTarget: "t\xfe\"", Rdev: 8, Content: []id.ID{id.Hash([]byte("c"))},
			Xattrs: []Xattr{{Name: []byte("user.a"), Value: []byte{0}}, {Name: []byte("user.b")}}},
	}}
	got, err := Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"nodes":[{"name":"a\u003c\u0026\u003e\u2028\t","type":"dir","mode":2147484141,"mtime":"1970-01-01T00:00:01.000000005Z","uid":1,"gid":2,"subtree":"` + sub.String() + `"},` +
		`{"name":"b\\xff","type":"symlink","mode":511,"mtime":"1970-01-01T01:00:02+01:00","ctime":"1970-01-01T00:00:03Z","uid":0,"gid":0,"user":"u","group":"g","inode":4,"device_id":5,"links":6,"size":7,"link_target":"t\\xfe\\\"","rdev":8,"content":["` + id.Hash([]byte("c")).String() + `"],"xattrs":[{"name":"dXNlci5h","value":"AA=="},{"name":"dXNlci5i","value":null}],"name_bytes":"Yv8=","link_target_bytes":"dP4i"}]}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestAppendNodeKnowsEveryField: appendNode writes Node's fields by hand,
// so a field added to Node (or Xattr, Tree, wireNode), renamed or given
// another tag must be added to appendNode too; this list makes that
// change fail here first.
func TestAppendNodeKnowsEveryField(t *testing.T) {
	tags := func(v any) []string {
		var s []string
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			s = append(s, f.Name+" "+f.Type.String()+" "+string(f.Tag))
		}
		return s
	}
	for _, c := range []struct {
		v    any
		want []string
	}{
		{Node{}, []string{
			`Name string json:"name"`, `Type string json:"type"`, `Mode fs.FileMode json:"mode"`,
			`ModTime time.Time json:"mtime"`, `ChangeTime time.Time json:"ctime,omitzero"`,
			`UID uint32 json:"uid"`, `GID uint32 json:"gid"`,
			`User string json:"user,omitempty"`, `Group string json:"group,omitempty"`,
			`Inode uint64 json:"inode,omitempty"`, `DeviceID uint64 json:"device_id,omitempty"`,
			`Links uint64 json:"links,omitempty"`, `Size uint64 json:"size,omitempty"`,
			`LinkTarget string json:"link_target,omitempty"`, `Rdev uint64 json:"rdev,omitempty"`,
			`Content []id.ID json:"content,omitempty"`, `Subtree *id.ID json:"subtree,omitempty"`,
			`Xattrs []tree.Xattr json:"xattrs,omitempty"`,
		}},
		{Xattr{}, []string{`Name []uint8 json:"name"`, `Value []uint8 json:"value"`}},
		{Tree{}, []string{`Nodes []*tree.Node json:"nodes"`, `ID id.ID json:"-"`}},
		{wireNode{}, []string{`Node *tree.Node `,
			`NameBytes []uint8 json:"name_bytes,omitempty"`, `LinkTargetBytes []uint8 json:"link_target_bytes,omitempty"`}},
	} {
		if got := tags(c.v); !slices.Equal(got, c.want) {
			t.Errorf("%T has fields\n%q\nappendTree writes\n%q", c.v, got, c.want)
		}
	}
}

// FuzzAppendTree: for any strings, bytes and numbers, appendTree writes
// what encoding/json writes.
func FuzzAppendTree(f *testing.F) {
	f.Add("name", "target", "user", []byte("x"), uint64(1), int64(0))
	f.Add("\xff<\u2028", "\\\"", "\x00\x1f&", []byte(nil), uint64(0), int64(-62135596801))
	f.Fuzz(func(t *testing.T, name, target, user string, val []byte, u uint64, sec int64) {
		r := rand.New(rand.NewPCG(u, uint64(sec)))
		n := oddNode(r)
		n.Name, n.LinkTarget, n.User, n.Group = name, target, user, target+name
		n.Size, n.Inode = u, u>>3
		n.ModTime = time.Unix(sec, int64(u%1e9)).UTC()
		n.Xattrs = append(n.Xattrs, Xattr{Name: []byte(user), Value: val})
		sameAsJSON(t, &Tree{Nodes: []*Node{oddNode(r), n}})
	})
}

// benchTree is a directory of 1,000 small files, as a backup of many small
// files encodes them.
func benchTree() *Tree {
	t := &Tree{}
	for i := range 1000 {
		t.Nodes = append(t.Nodes, &Node{
			Name: fmt.Sprintf("f%04d.dat", i), Type: File, Mode: 0o644,
			ModTime: time.Unix(1_700_000_000+int64(i), 123456789).UTC(), ChangeTime: time.Unix(1_700_000_000, 5).UTC(),
			UID: 1000, GID: 1000, User: "backup", Group: "backup", Inode: uint64(4_000_000 + i), DeviceID: 2049,
			Links: 1, Size: uint64(100 + i%300), Content: []id.ID{id.Hash(fmt.Appendf(nil, "%d", i))},
		})
	}
	return t
}

func BenchmarkEncodeTree(b *testing.B) {
	tr := benchTree()
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeJSON(tr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := appendTree(make([]byte, 0, 16+256*len(tr.Nodes)), tr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Encode", func(b *testing.B) { // with its decode-and-compare check
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Encode(tr); err != nil {
				b.Fatal(err)
			}
		}
	})
}
