package metrics

// The Prometheus text exposition format (version 0.0.4), as far as these
// files use it: gauges with HELP and TYPE lines and labelled samples.
// Written out here rather than with prometheus/common's expfmt, whose
// protobuf types cost every start of the binary a few milliseconds of
// package initialisation (reading the binary itself, among others): a
// start that archive-wal pays once per WAL segment. The tests check both
// directions against expfmt.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// A family is the series of one metric name.
type family struct {
	name   string
	help   string
	gauge  bool // TYPE gauge; other types are read but not carried over
	series []series
}

// A series is one sample: its labels, in the order written, and value.
type series struct {
	labels []label
	value  float64
}

type label struct{ name, value string }

// get returns the value of label name, "" when absent.
func (s series) get(name string) string {
	for _, l := range s.labels {
		if l.name == name {
			return l.value
		}
	}
	return ""
}

// writeText appends f in the text format to b.
func writeText(b *bytes.Buffer, f *family) {
	if f.help != "" {
		fmt.Fprintf(b, "# HELP %s %s\n", f.name, escape(f.help, false))
	}
	typ := "untyped"
	if f.gauge {
		typ = "gauge"
	}
	fmt.Fprintf(b, "# TYPE %s %s\n", f.name, typ)
	for _, s := range f.series {
		b.WriteString(f.name)
		if len(s.labels) > 0 {
			b.WriteByte('{')
			for i, l := range s.labels {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(b, "%s=\"%s\"", l.name, escape(l.value, true))
			}
			b.WriteByte('}')
		}
		b.WriteByte(' ')
		b.WriteString(formatValue(s.value))
		b.WriteByte('\n')
	}
}

// escape escapes a HELP text (backslash, newline) or a label value (also
// the double quote).
func escape(s string, quote bool) string {
	if !strings.ContainsAny(s, "\\\n\"") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '"' && quote:
			b.WriteString(`\"`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// errSyntax is wrapped by every parse failure.
var errSyntax = errors.New("not the Prometheus text format")

// parseText reads the families of r. Any line it does not understand
// fails the whole file: Write then replaces it rather than carry over
// half of it.
func parseText(r io.Reader) (map[string]*family, error) {
	fams := make(map[string]*family)
	get := func(name string) *family {
		f := fams[name]
		if f == nil {
			f = &family{name: name}
			fams[name] = f
		}
		return f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		fail := func(what string) error { return fmt.Errorf("line %d: %s: %w", n, what, errSyntax) }
		if rest, ok := strings.CutPrefix(line, "#"); ok {
			fields := strings.Fields(rest)
			if len(fields) < 2 || (fields[0] != "HELP" && fields[0] != "TYPE") {
				continue // a comment
			}
			if !validName(fields[1]) {
				return nil, fail("bad metric name")
			}
			f := get(fields[1])
			if fields[0] == "TYPE" {
				if len(fields) != 3 {
					return nil, fail("bad TYPE line")
				}
				f.gauge = fields[2] == "gauge"
				continue
			}
			_, text, _ := strings.Cut(strings.TrimLeft(rest, " \t"), fields[1])
			help, err := unescape(strings.TrimLeft(text, " \t"), false)
			if err != nil {
				return nil, fail(err.Error())
			}
			f.help = help
			continue
		}
		name, s, err := parseSample(line)
		if err != nil {
			return nil, fail(err.Error())
		}
		f := get(name)
		f.series = append(f.series, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return fams, nil
}

// parseSample parses `name{label="value",...} value [timestamp]`.
func parseSample(line string) (string, series, error) {
	var s series
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return "", s, errors.New("a sample without a value")
	}
	name, rest := line[:i], line[i:]
	if !validName(name) {
		return "", s, errors.New("bad metric name")
	}
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " \t")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq < 0 {
				return "", s, errors.New("bad label")
			}
			ln := strings.TrimSpace(rest[:eq])
			if !validName(ln) || strings.Contains(ln, ":") {
				return "", s, errors.New("bad label name")
			}
			rest = strings.TrimLeft(rest[eq+1:], " \t")
			v, after, err := quoted(rest)
			if err != nil {
				return "", s, err
			}
			s.labels = append(s.labels, label{ln, v})
			rest = strings.TrimLeft(after, " \t")
			switch {
			case strings.HasPrefix(rest, ","):
				rest = rest[1:]
			case strings.HasPrefix(rest, "}"):
			default:
				return "", s, errors.New("bad label list")
			}
		}
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return "", s, errors.New("bad value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", s, errors.New("bad value")
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return "", s, errors.New("bad timestamp")
		}
	}
	s.value = v
	return name, s, nil
}

// quoted parses a double-quoted label value at the start of s and returns
// it unescaped, with what follows it.
func quoted(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", errors.New("a label value without quotes")
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			v, err := unescape(s[1:i], true)
			return v, s[i+1:], err
		}
	}
	return "", "", errors.New("an unterminated label value")
}

func unescape(s string, quote bool) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i++; i == len(s) {
			return "", errors.New("a trailing backslash")
		}
		switch c := s[i]; {
		case c == '\\':
			b.WriteByte('\\')
		case c == 'n':
			b.WriteByte('\n')
		case c == '"' && quote:
			b.WriteByte('"')
		default:
			// As Prometheus reads HELP texts: an unknown escape
			// stays as written.
			if quote {
				return "", fmt.Errorf("an unknown escape \\%c", c)
			}
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// validName reports whether s is a metric name of the classic form.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
