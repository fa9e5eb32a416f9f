package pg

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ParseTablespaceMap reads a tablespace_map: one "<oid> <path>" per line,
// with newlines, carriage returns and backslashes in the path escaped by
// a backslash.
func ParseTablespaceMap(s string) (map[uint32]string, error) {
	m := map[uint32]string{}
	var (
		cur    strings.Builder
		escape bool
	)
	line := func() error {
		l := cur.String()
		cur.Reset()
		if l == "" {
			return nil
		}
		oid, p, ok := strings.Cut(l, " ")
		n, err := strconv.ParseUint(oid, 10, 32)
		if !ok || err != nil || n == 0 || p == "" {
			return fmt.Errorf("tablespace_map: invalid line %q: want \"<oid> <path>\"", l)
		}
		if _, dup := m[uint32(n)]; dup {
			return fmt.Errorf("tablespace_map: tablespace %d listed twice", n)
		}
		m[uint32(n)] = p
		return nil
	}
	for _, c := range s {
		switch {
		case escape:
			cur.WriteRune(c)
			escape = false
		case c == '\\':
			escape = true
		case c == '\n' || c == '\r':
			if err := line(); err != nil {
				return nil, err
			}
		default:
			cur.WriteRune(c)
		}
	}
	if escape {
		return nil, errors.New("tablespace_map ends in a lone backslash")
	}
	if err := line(); err != nil {
		return nil, err
	}
	return m, nil
}

// FormatTablespaceMap writes m in tablespace_map's format, OIDs ascending.
func FormatTablespaceMap(m map[uint32]string) string {
	var b strings.Builder
	for _, oid := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%d ", oid)
		for _, c := range m[oid] {
			if c == '\n' || c == '\r' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(c)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
