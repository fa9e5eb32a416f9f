package index

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
)

func sampleFile() *File {
	r := newRand(1)
	f := &File{}
	for _, n := range []int{3, 0, 1, 17} {
		pb := PackBlobs{Pack: randID(r)}
		for range n {
			pb.Blobs = append(pb.Blobs, randEntry(r, pb.Pack))
		}
		f.Packs = append(f.Packs, pb)
	}
	return f
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	f := sampleFile()
	b := Encode(f)
	if want := fileHeader + 4*packHeader + 21*blobSize; len(b) != want {
		t.Fatalf("encoded %d bytes, want %d", len(b), want)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, f)
	}
}

func TestDecodeSetsPack(t *testing.T) {
	f := sampleFile()
	for i := range f.Packs {
		for j := range f.Packs[i].Blobs {
			f.Packs[i].Blobs[j].Pack = id.ID{}
		}
	}
	got, err := Decode(Encode(f))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got.Packs {
		for _, e := range p.Blobs {
			if e.Pack != p.Pack {
				t.Fatalf("blob %s: Pack %s, want %s", e.ID.Short(), e.Pack.Short(), p.Pack.Short())
			}
		}
	}
}

// TestEncodeLayout pins the byte layout documented in docs/format.md.
func TestEncodeLayout(t *testing.T) {
	var pid, bid id.ID
	pid[0], bid[0] = 0xaa, 0xbb
	b := Encode(&File{Packs: []PackBlobs{{Pack: pid, Blobs: []Entry{
		{ID: bid, Type: TreeBlob, Offset: 0x01020304, Length: 0x11, RawLength: 0x22},
	}}}})
	want := []byte("NGIX\x01\x01\x00\x00\x00")
	want = append(want, pid[:]...)
	want = append(want, 1, 0, 0, 0)
	want = append(want, 1)
	want = append(want, bid[:]...)
	want = append(want, 4, 3, 2, 1, 0x11, 0, 0, 0, 0x22, 0, 0, 0)
	if !bytes.Equal(b, want) {
		t.Fatalf("layout:\n got %x\nwant %x", b, want)
	}
}

func TestEncodeEmpty(t *testing.T) {
	b := Encode(&File{})
	if string(b) != "NGIX\x01\x00\x00\x00\x00" {
		t.Fatalf("empty file encodes as %q", b)
	}
	f, err := Decode(b)
	if err != nil || len(f.Packs) != 0 {
		t.Fatalf("Decode(empty) = %+v, %v", f, err)
	}
}

func TestDecodeTruncated(t *testing.T) {
	b := Encode(sampleFile())
	for n := range len(b) {
		if _, err := Decode(b[:n]); err == nil {
			t.Fatalf("Decode of the first %d of %d bytes succeeded", n, len(b))
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := Encode(sampleFile())
	edit := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(valid)) }
	firstBlob := fileHeader + packHeader
	tests := []struct {
		name, b, errPart string
	}{
		{"empty", "", "too short"},
		{"extended", string(append(bytes.Clone(valid), 0)), "unexpected bytes"},
		{"bad magic", string(edit(func(b []byte) []byte { b[0] = 'X'; return b })), "bad magic"},
		{"version 2", string(edit(func(b []byte) []byte { b[4] = 2; return b })), "unsupported version 2"},
		{"version 0", string(edit(func(b []byte) []byte { b[4] = 0; return b })), "unsupported version 0"},
		{"unknown type", string(edit(func(b []byte) []byte { b[firstBlob] = 2; return b })), "unknown blob type 2"},
		{"huge pack count", string(edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[5:], 0xffffffff)
			return b
		})), "cannot fit"},
		{"pack count one too many", string(edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[5:], 5)
			return b
		})), "truncated"},
		{"huge blob count", string(edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[fileHeader+id.Size:], 0xffffffff)
			return b
		})), "cannot fit"},
		{"blob count one too few", string(edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[fileHeader+id.Size:], 2)
			return b
		})), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Decode([]byte(tt.b))
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", f)
			}
			if !strings.Contains(err.Error(), tt.errPart) {
				t.Fatalf("error %q does not mention %q", err, tt.errPart)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(sampleFile()))
	f.Add(Encode(&File{}))
	f.Add(Encode(&File{Packs: []PackBlobs{{}}}))
	f.Add([]byte("NGIX\x01\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Decode(b)
		if err != nil {
			return
		}
		// The format has exactly one encoding per File.
		if got := Encode(file); !bytes.Equal(got, b) {
			t.Fatalf("Encode(Decode(b)) != b:\n got %x\nwant %x", got, b)
		}
	})
}
