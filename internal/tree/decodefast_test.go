package tree

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/id"
)

// sampleTree has every kind of node and every field set somewhere.
func sampleTree(r *rand.Rand, n int) *Tree {
	t := &Tree{}
	for i := range n {
		nd := &Node{
			Name: fmt.Sprintf("entry-%03d-é", i), Mode: fs.FileMode(r.Uint32N(0o7777)),
			ModTime:    time.Unix(r.Int64N(4e9), r.Int64N(1e9)).UTC(),
			ChangeTime: time.Unix(r.Int64N(4e9), 0).UTC(),
			UID:        r.Uint32(), GID: r.Uint32(), User: "u", Group: "g",
			Inode: r.Uint64(), DeviceID: r.Uint64N(1 << 20), Links: r.Uint64N(3),
		}
		if i%5 == 4 { // not UTF-8: a Latin-1 byte, 0xff 0xfe, a backslash and a quote
			nd.Name = fmt.Sprintf("entry-%03d-\xdf\xff\xfe\\\"", i)
		}
		switch i % 4 {
		case 0:
			nd.Type, nd.Size = File, r.Uint64()
			for range r.IntN(4) {
				nd.Content = append(nd.Content, id.Hash(fmt.Appendf(nil, "%d", r.Int())))
			}
		case 1:
			sub := id.Hash(fmt.Appendf(nil, "%d", i))
			nd.Type, nd.Subtree = Dir, &sub
		case 2:
			nd.Type, nd.LinkTarget = Symlink, "../target/"+nd.Name
			if i%3 == 0 {
				nd.LinkTarget += "\xe9"
			}
		case 3:
			nd.Type, nd.Rdev = CharDev, r.Uint64()
		}
		if i%3 == 0 {
			nd.Xattrs = []Xattr{
				{Name: []byte("security.capability"), Value: []byte{1, 0, 0, 2, 0xff}},
				{Name: []byte("user.x"), Value: fmt.Appendf(nil, "v%d\x00", r.Int())},
				{Name: []byte("user.\xff"), Value: []byte{}},
			}
		}
		t.Nodes = append(t.Nodes, nd)
	}
	t.Sort()
	return t
}

// Encode's output must take the fast path: if it fell back to
// encoding/json, trees would still decode, only slowly, and no other test
// would notice.
func TestDecodeFastTakesEncodedTrees(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, 300} {
		tr := sampleTree(r, n)
		b, err := Encode(tr)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := decodeFast(b)
		if !ok {
			t.Fatalf("%d nodes: the fast path refused Encode's output: %s", n, b)
		}
		want, err := decodeJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || !got.Equal(tr) {
			t.Fatalf("%d nodes: fast path decoded\n%+v\nencoding/json\n%+v", n, got.Nodes, want.Nodes)
		}
	}
}

func TestDecodeFastRefuses(t *testing.T) {
	h := id.Hash(nil).String()
	for _, in := range []string{
		`{"nodes":[{"name":"a\u0041"}]}`, // an escape other than \\ and \"
		`{"nodes":[{"name":"a\nb"}]}`,
		`{"nodes":[{"Name":"a"}]}`,       // another case of a key
		`{"nodes":[{"name":"a","x":1}]}`, // an unknown key
		`{"nodes":[{"size":01}]}`,        // a leading zero
		`{"nodes":[{"size":1.5}]}`,       // a fraction
		`{"nodes":[{"size":1e3}]}`,       // an exponent
		`{"nodes":[{"uid":4294967296}]}`, // overflows uint32
		`{"nodes":[{"size":18446744073709551616}]}`,
		`{"nodes":[{"subtree":null}]}`,
		`{"nodes":[{"content":["` + h[:63] + `"]}]}`,
		`{"nodes":[{"name":"` + "\xff" + `"}]}`,            // not UTF-8
		`{"nodes":[{"name":"a","name_bytes":"/w=="}]}`,     // bytes that do not match the name
		`{"nodes":[{"name":"a\\xff","name_bytes":"Yf8"}]}`, // base64 without padding
		`{"nodes":[{"link_target":"b","link_target_bytes":"YQ=="}]}`,
		`{"nodes":[]} `, // trailing space
		`{"nodes": []}`,
		`{"nodes":[null]}`,
		`{"nodes":[{"xattrs":null}]}`,
		`{"nodes":[{"xattrs":[{"value":"","name":"YQ=="}]}]}`, // another order
		`{"nodes":[{"xattrs":[{"name":"YQ"}]}]}`,              // no value
		`{"nodes":[{"xattrs":[{"name":"Y","value":""}]}]}`,    // not base64
	} {
		if _, ok := decodeFast([]byte(in)); ok {
			t.Errorf("fast path took %s", in)
		}
	}
	if n, ok := decodeFast([]byte(`{"nodes":[{"size":18446744073709551615,"uid":4294967295}]}`)); !ok || n.Nodes[0].Size != 1<<64-1 || n.Nodes[0].UID != 1<<32-1 {
		t.Errorf("largest values: %v %+v", ok, n)
	}
	// The escapes of escaped names, and exact bytes that match them.
	n, ok := decodeFast([]byte(`{"nodes":[{"name":"a\\xff\\\"","link_target":"b\\xfe","name_bytes":"Yf8i","link_target_bytes":"Yv4="}]}`))
	if !ok || n.Nodes[0].Name != "a\xff\"" || n.Nodes[0].LinkTarget != "b\xfe" {
		t.Errorf("exact bytes: %v %+v", ok, n)
	}
}

// FuzzDecodeFast: whatever the fast path takes, encoding/json decodes to
// the same tree.
func FuzzDecodeFast(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 4, 6} {
		b, err := Encode(sampleTree(r, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"nodes":[{"name":"a","name":"b","content":["` + id.Hash(nil).String() + `"],"content":[]}]}`))
	f.Add([]byte(`{"nodes":[{"xattrs":[{"name":"YQ==","value":""},{"name":"Yg==","value":"AA=="}],"xattrs":[]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeFast(b)
		if !ok {
			return
		}
		want, err := decodeJSON(b)
		if err != nil {
			t.Fatalf("fast path took what encoding/json refuses (%v): %q", err, b)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fast path and encoding/json differ on %q:\n%+v\n%+v", b, got.Nodes, want.Nodes)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	enc, err := Encode(sampleTree(rand.New(rand.NewPCG(5, 6)), 20))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err := Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			var t Tree
			if err := json.Unmarshal(enc, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
}
