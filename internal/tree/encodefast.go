package tree

import (
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"unicode/utf8"
)

// appendTree appends the encoding of t that encoding/json gives for it
// (json.Marshal of t, or of toWire(t) when a name or link target is not
// valid UTF-8), byte for byte, without reflection: encoding/json spent
// about 8% of the CPU of a first backup of many small files encoding
// trees. A tree's ID is the hash of these bytes, so they must never
// change; FuzzAppendTree and TestAppendTreeMatchesJSON hold them to
// encoding/json's. The nodes must not be nil (Encode checks).
func appendTree(b []byte, t *Tree) ([]byte, error) {
	if t.Nodes == nil {
		return append(b, `{"nodes":null}`...), nil
	}
	b = append(b, `{"nodes":[`...)
	for i, n := range t.Nodes {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendNode(b, n); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

// appendNode appends n's object, fields in the order of Node's, then the
// exact bytes of a name or link target that is not valid UTF-8 (wireNode).
func appendNode(b []byte, n *Node) ([]byte, error) {
	name, target := n.Name, n.LinkTarget
	var nameBytes, targetBytes string
	if needsWire(n) {
		name, target = Escape(n.Name), Escape(n.LinkTarget)
		if name != n.Name {
			nameBytes = n.Name
		}
		if target != n.LinkTarget {
			targetBytes = n.LinkTarget
		}
	}
	b = append(b, `{"name":`...)
	b = appendString(b, name)
	b = append(b, `,"type":`...)
	b = appendString(b, n.Type)
	b = append(b, `,"mode":`...)
	b = strconv.AppendUint(b, uint64(n.Mode), 10)
	b = append(b, `,"mtime":"`...)
	var err error
	if b, err = n.ModTime.AppendText(b); err != nil {
		return nil, err
	}
	b = append(b, '"')
	if !n.ChangeTime.IsZero() {
		b = append(b, `,"ctime":"`...)
		if b, err = n.ChangeTime.AppendText(b); err != nil {
			return nil, err
		}
		b = append(b, '"')
	}
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(n.UID), 10)
	b = append(b, `,"gid":`...)
	b = strconv.AppendUint(b, uint64(n.GID), 10)
	b = appendOptString(b, `,"user":`, n.User)
	b = appendOptString(b, `,"group":`, n.Group)
	b = appendOptUint(b, `,"inode":`, n.Inode)
	b = appendOptUint(b, `,"device_id":`, n.DeviceID)
	b = appendOptUint(b, `,"links":`, n.Links)
	b = appendOptUint(b, `,"size":`, n.Size)
	b = appendOptString(b, `,"link_target":`, target)
	b = appendOptUint(b, `,"rdev":`, n.Rdev)
	if len(n.Content) > 0 {
		b = append(b, `,"content":[`...)
		for i, c := range n.Content {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = hex.AppendEncode(b, c[:])
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	if n.Subtree != nil {
		b = append(b, `,"subtree":"`...)
		b = hex.AppendEncode(b, n.Subtree[:])
		b = append(b, '"')
	}
	if len(n.Xattrs) > 0 {
		b = append(b, `,"xattrs":[`...)
		for i, x := range n.Xattrs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendBase64(b, x.Name)
			b = append(b, `,"value":`...)
			b = appendBase64(b, x.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if nameBytes != "" {
		b = append(b, `,"name_bytes":"`...)
		b = base64.StdEncoding.AppendEncode(b, []byte(nameBytes))
		b = append(b, '"')
	}
	if targetBytes != "" {
		b = append(b, `,"link_target_bytes":"`...)
		b = base64.StdEncoding.AppendEncode(b, []byte(targetBytes))
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// appendOptString appends key and s unless s is empty (omitempty).
func appendOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

// appendOptUint appends key and v unless v is 0 (omitempty).
func appendOptUint(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), v, 10)
}

// appendBase64 appends a []byte as encoding/json does: null for nil,
// otherwise a string of standard base64 with padding.
func appendBase64(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendString appends s as a JSON string the way encoding/json does with
// HTML escaping (its default): \\ and \", \b \f \n \r \t, other control
// characters and < > & as \u00XX, a byte that is not part of valid UTF-8
// as \ufffd, U+2028 and U+2029 as \u2028 and \u2029.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
