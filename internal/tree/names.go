package tree

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Names and link targets are bytes, as the kernel keeps them; in memory a
// Node's Name and LinkTarget hold those exact bytes, valid UTF-8 or not.
// JSON strings cannot carry bytes that are not UTF-8 (encoding/json would
// replace each by U+FFFD, making distinct names equal), so such a string
// is encoded as its escaped form (Escape) in the usual field, with the
// exact bytes in base64 in a second one: name_bytes, link_target_bytes.

// Escape returns s itself when it is valid UTF-8, and otherwise the body
// of its Go double-quoted form (strconv.Quote): a byte that is not part of
// valid UTF-8 is written \xNN, a backslash \\, a double quote \", and
// characters that are not printable as Go escapes. It is the display form
// stored beside the exact bytes.
func Escape(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// Show returns p for text output: p itself when it is valid UTF-8 made
// only of printable characters (spaces included), and otherwise its Go
// double-quoted form, in which \xNN is one raw byte, so that every path
// shows unambiguously and the exact bytes can be read back
// (strconv.Unquote, or $'...' in a shell). Paths of a snapshot start with
// "/", so a shown path starting with a double quote is always quoted.
func Show(p string) string {
	if printable(p) {
		return p
	}
	return strconv.Quote(p)
}

func printable(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || !strconv.IsPrint(r) {
			return false
		}
		i += size
	}
	return true
}

// IsEscapeOf reports whether shown is what a writer may store as the
// escaped form of the bytes raw: raw itself when raw is valid UTF-8, and
// otherwise the body of a Go double-quoted string that reads back as raw.
// It does not compare shown with Escape(raw): which characters
// strconv.Quote escapes depends on the Unicode tables of the Go that built
// the writer (U+1C89 is escaped before Unicode 16 and not after), and a
// tree or snapshot must read the same with every build.
func IsEscapeOf(shown, raw string) bool {
	if utf8.ValidString(raw) {
		return shown == raw
	}
	s, err := strconv.Unquote(`"` + shown + `"`)
	return err == nil && s == raw
}

// ForJSON returns what JSON output gives for the byte string s: s itself
// and nil when it is valid UTF-8, otherwise Escape(s) and the exact bytes
// (which encoding/json writes in base64) for a companion "<field>_bytes".
func ForJSON(s string) (string, []byte) {
	if utf8.ValidString(s) {
		return s, nil
	}
	return Escape(s), []byte(s)
}

// ForJSONList is ForJSON for a list: ss itself and nil when every string
// is valid UTF-8, otherwise every string escaped and every string's exact
// bytes, in the same order, for a companion "<field>_bytes".
func ForJSONList(ss []string) ([]string, [][]byte) {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			shown, raw := make([]string, len(ss)), make([][]byte, len(ss))
			for i, s := range ss {
				shown[i], raw[i] = Escape(s), []byte(s)
			}
			return shown, raw
		}
	}
	return ss, nil
}

// wireNode is the encoded form of a node whose name or link target is not
// valid UTF-8: Node holds the escaped forms, the *Bytes fields the exact
// bytes.
type wireNode struct {
	*Node
	NameBytes       []byte `json:"name_bytes,omitempty"`
	LinkTargetBytes []byte `json:"link_target_bytes,omitempty"`
}

type wireTree struct {
	Nodes []*wireNode `json:"nodes"`
}

// needsWire reports whether n cannot be encoded as a plain JSON Node.
func needsWire(n *Node) bool {
	return !utf8.ValidString(n.Name) || !utf8.ValidString(n.LinkTarget)
}

// toWire returns the encoded form of t's nodes.
func toWire(t *Tree) *wireTree {
	w := &wireTree{Nodes: make([]*wireNode, len(t.Nodes))}
	for i, n := range t.Nodes {
		if !needsWire(n) {
			w.Nodes[i] = &wireNode{Node: n}
			continue
		}
		c := *n
		c.Name, c.LinkTarget = Escape(n.Name), Escape(n.LinkTarget)
		wn := &wireNode{Node: &c}
		if c.Name != n.Name {
			wn.NameBytes = []byte(n.Name)
		}
		if c.LinkTarget != n.LinkTarget {
			wn.LinkTargetBytes = []byte(n.LinkTarget)
		}
		w.Nodes[i] = wn
	}
	return w
}

// fromWire sets the exact bytes of a decoded node and checks that the
// escaped form beside them is theirs.
func fromWire(n *Node, name, target []byte) error {
	if name != nil {
		if !IsEscapeOf(n.Name, string(name)) {
			return fmt.Errorf("entry %q: name %q does not match name_bytes", name, n.Name)
		}
		n.Name = string(name)
	}
	if target != nil {
		if !IsEscapeOf(n.LinkTarget, string(target)) {
			return fmt.Errorf("entry %q: link_target %q does not match link_target_bytes", n.Name, n.LinkTarget)
		}
		n.LinkTarget = string(target)
	}
	return nil
}

// decodeJSON decodes b with encoding/json: what decodeFast does not take.
func decodeJSON(b []byte) (*Tree, error) {
	var w wireTree
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	t := &Tree{}
	if w.Nodes != nil {
		t.Nodes = make([]*Node, len(w.Nodes))
	}
	for i, wn := range w.Nodes {
		if wn == nil {
			return nil, errNullNode
		}
		n := wn.Node
		if n == nil {
			n = &Node{}
		}
		if err := fromWire(n, wn.NameBytes, wn.LinkTargetBytes); err != nil {
			return nil, err
		}
		t.Nodes[i] = n
	}
	return t, nil
}

// MarshalJSON writes c with its path as ForJSON gives it: "path", and
// "path_bytes" when the path is not valid UTF-8.
func (c Change) MarshalJSON() ([]byte, error) {
	type plain Change
	w := struct {
		plain
		PathBytes []byte `json:"path_bytes,omitempty"`
	}{plain: plain(c)}
	w.Path, w.PathBytes = ForJSON(c.Path)
	return json.Marshal(w)
}

// PathError is an entry that a backup or a restore could not handle: its
// path (bytes, as every path) and what went wrong.
type PathError struct {
	Path string `json:"path"`
	Err  string `json:"error"`
}

// MarshalJSON writes e with its path as ForJSON gives it: "path", and
// "path_bytes" when the path is not valid UTF-8.
func (e PathError) MarshalJSON() ([]byte, error) {
	type plain PathError
	w := struct {
		plain
		PathBytes []byte `json:"path_bytes,omitempty"`
	}{plain: plain(e)}
	w.Path, w.PathBytes = ForJSON(e.Path)
	return json.Marshal(w)
}
