package tree

import (
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"math"
	"unicode/utf8"

	"github.com/nestguard/nestguard/internal/id"
)

// decodeFast parses the form that Encode writes, without reflection:
// encoding/json spent a fifth of the CPU of an unchanged re-backup of many
// small files decoding its parent's trees. It reports false for anything
// it does not take in (whitespace, escapes other than \\ and \" in string
// values, unknown or differently cased keys, nulls, floats, a name or link
// target that does not match its exact bytes), and Decode then uses
// decodeJSON, so every input decodes as encoding/json decodes it.
// FuzzDecodeFast holds it to that.
func decodeFast(b []byte) (*Tree, bool) {
	d := fastDecoder{b: b}
	if string(b) == `{"nodes":null}` { // an empty tree built without a slice
		return &Tree{}, true
	}
	if !d.lit(`{"nodes":[`) {
		return nil, false
	}
	t := &Tree{Nodes: []*Node{}}
	if d.lit("]}") {
		return t, d.i == len(b)
	}
	for {
		n, ok := d.node()
		if !ok {
			return nil, false
		}
		t.Nodes = append(t.Nodes, n)
		if d.lit(",") {
			continue
		}
		if d.lit("]}") && d.i == len(b) {
			return t, true
		}
		return nil, false
	}
}

// fastDecoder allocates little per node: nodes and content IDs are
// carved from blocks shared by the tree (a tree's nodes live and die
// together), types are the package's constants, and a user or group name
// equal to the previous node's is that string.
type fastDecoder struct {
	b []byte
	i int

	nodeBlock   []Node  // the current block; nodes are taken from its spare capacity
	idBlock     []id.ID // likewise for content
	user, group string  // the last ones decoded
}

// newNode returns a zero node from the current block.
func (d *fastDecoder) newNode() *Node {
	if len(d.nodeBlock) == cap(d.nodeBlock) {
		d.nodeBlock = make([]Node, 0, min(2*cap(d.nodeBlock)+8, 512))
	}
	d.nodeBlock = d.nodeBlock[:len(d.nodeBlock)+1]
	return &d.nodeBlock[len(d.nodeBlock)-1]
}

// lit consumes s if the input continues with it.
func (d *fastDecoder) lit(s string) bool {
	if len(d.b)-d.i < len(s) || string(d.b[d.i:d.i+len(s)]) != s {
		return false
	}
	d.i += len(s)
	return true
}

// exact holds the name_bytes and link_target_bytes of a node being decoded.
type exact struct {
	name, target []byte
}

func (d *fastDecoder) node() (*Node, bool) {
	if !d.lit("{") {
		return nil, false
	}
	n := d.newNode()
	if d.lit("}") {
		return n, true
	}
	var x exact
	for {
		key, ok := d.raw()
		if !ok || !d.lit(":") {
			return nil, false
		}
		if !d.field(n, &x, string(key)) {
			return nil, false
		}
		if d.lit(",") {
			continue
		}
		if !d.lit("}") {
			return nil, false
		}
		if x.name != nil || x.target != nil {
			return n, fromWire(n, x.name, x.target) == nil
		}
		return n, true
	}
}

// field decodes the value of key into n, or into x for the exact bytes.
func (d *fastDecoder) field(n *Node, x *exact, key string) bool {
	var ok bool
	switch key {
	case "name_bytes":
		x.name, ok = d.base64()
	case "link_target_bytes":
		x.target, ok = d.base64()
	case "name":
		n.Name, ok = d.str()
	case "type":
		n.Type, ok = d.typ()
	case "user":
		n.User, ok = d.same(&d.user)
	case "group":
		n.Group, ok = d.same(&d.group)
	case "link_target":
		n.LinkTarget, ok = d.str()
	case "mode":
		var v uint64
		v, ok = d.uint(math.MaxUint32)
		n.Mode = fs.FileMode(v)
	case "uid":
		var v uint64
		v, ok = d.uint(math.MaxUint32)
		n.UID = uint32(v)
	case "gid":
		var v uint64
		v, ok = d.uint(math.MaxUint32)
		n.GID = uint32(v)
	case "inode":
		n.Inode, ok = d.uint(math.MaxUint64)
	case "device_id":
		n.DeviceID, ok = d.uint(math.MaxUint64)
	case "links":
		n.Links, ok = d.uint(math.MaxUint64)
	case "size":
		n.Size, ok = d.uint(math.MaxUint64)
	case "rdev":
		n.Rdev, ok = d.uint(math.MaxUint64)
	case "mtime", "ctime":
		start := d.i
		if _, ok = d.raw(); !ok {
			return false
		}
		t := &n.ModTime
		if key == "ctime" {
			t = &n.ChangeTime
		}
		// The same parser encoding/json calls, on the same quoted bytes.
		ok = t.UnmarshalJSON(d.b[start:d.i]) == nil
	case "content":
		n.Content, ok = d.ids()
	case "xattrs":
		n.Xattrs, ok = d.xattrs()
	case "subtree":
		var v id.ID
		if v, ok = d.id(); ok {
			n.Subtree = &v
		}
	}
	return ok
}

// raw consumes a string without escapes or control characters, in valid
// UTF-8 (encoding/json would replace what is not), and returns its bytes.
func (d *fastDecoder) raw() ([]byte, bool) {
	if !d.lit(`"`) {
		return nil, false
	}
	start := d.i
	ascii := true
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// str consumes a string value. Unlike raw it takes the escapes \\ and \",
// which escaped names (Escape) hold.
func (d *fastDecoder) str() (string, bool) {
	start := d.i
	s, ok := d.raw()
	if ok {
		return string(s), true
	}
	d.i = start
	if !d.lit(`"`) {
		return "", false
	}
	var out []byte
	from := d.i
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			out = append(out, d.b[from:d.i]...)
			d.i++
			return string(out), utf8.Valid(out)
		case c == '\\':
			if d.i+1 == len(d.b) || d.b[d.i+1] != '\\' && d.b[d.i+1] != '"' {
				return "", false
			}
			out = append(out, d.b[from:d.i]...)
			d.i++ // the escaped character is copied with the next run
			from = d.i
		case c < 0x20:
			return "", false
		}
	}
	return "", false
}

// typ consumes a string value, returning the constant for a known type.
func (d *fastDecoder) typ() (string, bool) {
	start := d.i
	if s, ok := d.raw(); ok {
		for _, t := range [...]string{File, Dir, Symlink, Dev, CharDev, FIFO, Socket} {
			if string(s) == t {
				return t, true
			}
		}
	}
	d.i = start
	return d.str()
}

// same consumes a string value, returning *last when it is equal to it,
// and otherwise the new string, which it keeps in *last.
func (d *fastDecoder) same(last *string) (string, bool) {
	start := d.i
	if s, ok := d.raw(); ok && string(s) == *last {
		return *last, true
	}
	d.i = start
	v, ok := d.str()
	if ok {
		*last = v
	}
	return v, ok
}

// base64 consumes a string holding standard base64 with padding, as
// encoding/json writes []byte.
func (d *fastDecoder) base64() ([]byte, bool) {
	s, ok := d.raw()
	if !ok {
		return nil, false
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(out, s)
	return out[:n], err == nil
}

// uint consumes a JSON integer of at most max. A fraction or an exponent
// is left to encoding/json.
func (d *fastDecoder) uint(max uint64) (uint64, bool) {
	start := d.i
	lim, last := max/10, max%10
	var v uint64
	for ; d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9'; d.i++ {
		c := uint64(d.b[d.i] - '0')
		if v > lim || v == lim && c > last {
			return 0, false // overflow
		}
		v = v*10 + c
	}
	switch {
	case d.i == start, d.b[start] == '0' && d.i-start > 1: // empty, or a leading zero
		return 0, false
	case d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E'):
		return 0, false
	}
	return v, true
}

func (d *fastDecoder) id() (id.ID, bool) {
	var v id.ID
	s, ok := d.raw()
	if !ok || len(s) != 2*id.Size {
		return v, false
	}
	_, err := hex.Decode(v[:], s)
	return v, err == nil
}

func (d *fastDecoder) ids() ([]id.ID, bool) {
	if !d.lit("[") {
		return nil, false
	}
	if d.lit("]") {
		return []id.ID{}, true // as encoding/json: [] is empty, not nil
	}
	// The IDs go to the shared block, and the node gets them with no
	// spare capacity: an append to its content copies.
	start := len(d.idBlock)
	for {
		v, ok := d.id()
		if !ok {
			return nil, false
		}
		if len(d.idBlock) == cap(d.idBlock) {
			// A new block; this node's IDs so far move with it.
			grown := make([]id.ID, len(d.idBlock)-start, max(2*cap(d.idBlock), 64, 2*(len(d.idBlock)-start)))
			copy(grown, d.idBlock[start:])
			d.idBlock, start = grown, 0
		}
		d.idBlock = append(d.idBlock, v)
		if d.lit(",") {
			continue
		}
		return d.idBlock[start:len(d.idBlock):len(d.idBlock)], d.lit("]")
	}
}

// xattrs consumes the list Encode writes: objects with "name" then
// "value", both base64. Any other form is left to encoding/json.
func (d *fastDecoder) xattrs() ([]Xattr, bool) {
	if !d.lit("[") {
		return nil, false
	}
	xs := []Xattr{} // as encoding/json: [] is empty, not nil
	if d.lit("]") {
		return xs, true
	}
	for {
		var x Xattr
		var ok bool
		if !d.lit(`{"name":`) {
			return nil, false
		}
		if x.Name, ok = d.base64(); !ok || !d.lit(`,"value":`) {
			return nil, false
		}
		if x.Value, ok = d.base64(); !ok || !d.lit("}") {
			return nil, false
		}
		xs = append(xs, x)
		if d.lit(",") {
			continue
		}
		return xs, d.lit("]")
	}
}
