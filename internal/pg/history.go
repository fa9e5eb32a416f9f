package pg

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/nestguard/nestguard/internal/pgmeta"
)

// A timeline history file (TTTTTTTT.history) is written when a server
// ends recovery on a new timeline. It lists every ancestor timeline and
// the position where the next one branched off it:
//
//	1	0/3000000	no recovery target specified
//	2	0/5000A28	before 2024-05-01 12:00:00+00
//
// Recovery follows this chain to replay WAL of the right timeline for each
// position.

// HistoryEntry is one ancestor: timeline TLI, which the next timeline left
// at SwitchPoint.
type HistoryEntry struct {
	TLI         uint32 `json:"timeline"`
	SwitchPoint LSN    `json:"switch_point"`
	Reason      string `json:"reason,omitempty"`
}

// History is a timeline and its ancestors, oldest first. Timeline 1 has
// none (and no history file).
type History struct {
	TLI     uint32         `json:"timeline"`
	Parents []HistoryEntry `json:"parents,omitempty"`
}

// EndOfWAL is the end of a timeline that has not been left.
const EndOfWAL = LSN(1<<64 - 1)

// TimelineSpan is the part of WAL [Begin, End) a history takes from one
// timeline.
type TimelineSpan struct {
	TLI        uint32
	Begin, End LSN
}

// maxHistoryEntries bounds what a damaged file can make us allocate; a
// cluster promoted this often has other problems.
const maxHistoryEntries = 100_000

// ParseHistory reads the history file of timeline tli as PostgreSQL does:
// blank lines and lines starting with # are skipped, each other line is a
// timeline ID, a switch point and an optional reason. Timeline IDs must
// increase and stay below tli; switch points must not decrease.
func ParseHistory(tli uint32, data []byte) (*History, error) {
	if tli == 0 {
		return nil, fmt.Errorf("timeline history: timeline 0 does not exist")
	}
	h := &History{TLI: tli}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimLeft(sc.Text(), " \t\r\v\f")
		if line == "" || line[0] == '#' {
			continue
		}
		e, err := parseHistoryLine(line)
		if err != nil {
			return nil, fmt.Errorf("history file of timeline %d, line %d: %w", tli, lineNo, err)
		}
		if n := len(h.Parents); n > 0 {
			prev := h.Parents[n-1]
			if e.TLI <= prev.TLI {
				return nil, fmt.Errorf("history file of timeline %d, line %d: timeline IDs must increase (%d after %d)", tli, lineNo, e.TLI, prev.TLI)
			}
			if e.SwitchPoint < prev.SwitchPoint {
				return nil, fmt.Errorf("history file of timeline %d, line %d: switch point %s is before the previous one, %s", tli, lineNo, e.SwitchPoint, prev.SwitchPoint)
			}
		}
		if e.TLI >= tli {
			return nil, fmt.Errorf("history file of timeline %d, line %d: ancestor timeline %d is not older", tli, lineNo, e.TLI)
		}
		if len(h.Parents) >= maxHistoryEntries {
			return nil, fmt.Errorf("history file of timeline %d: more than %d entries", tli, maxHistoryEntries)
		}
		h.Parents = append(h.Parents, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("history file of timeline %d: %w", tli, err)
	}
	return h, nil
}

// parseHistoryLine reads "<tli> <hi>/<lo> [reason]", fields separated by
// white space (PostgreSQL writes tabs).
func parseHistoryLine(line string) (HistoryEntry, error) {
	tliField, rest := cutField(line)
	n, err := strconv.ParseUint(tliField, 10, 32)
	if err != nil || n == 0 {
		return HistoryEntry{}, fmt.Errorf("%q: want a timeline ID (a positive number) first", line)
	}
	lsnField, rest := cutField(rest)
	if lsnField == "" {
		return HistoryEntry{}, fmt.Errorf("%q: want a switch point (an LSN such as 0/3000000) after the timeline ID", line)
	}
	lsn, err := pgmeta.ParseLSN(lsnField)
	if err != nil {
		return HistoryEntry{}, fmt.Errorf("%q: switch point: %w", line, err)
	}
	return HistoryEntry{TLI: uint32(n), SwitchPoint: lsn, Reason: strings.TrimSpace(rest)}, nil
}

// cutField splits off the first white-space separated field.
func cutField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t\r\v\f")
	i := strings.IndexAny(s, " \t\r\v\f")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// Format writes h as PostgreSQL writes history files.
func (h *History) Format() []byte {
	var b bytes.Buffer
	for _, e := range h.Parents {
		fmt.Fprintf(&b, "%d\t%s\t%s\n", e.TLI, e.SwitchPoint, e.Reason)
	}
	return b.Bytes()
}

// Spans lists the part of WAL each timeline of the history contributes,
// oldest first; the last span is h.TLI's own, open-ended (End = EndOfWAL).
func (h *History) Spans() []TimelineSpan {
	out := make([]TimelineSpan, 0, len(h.Parents)+1)
	var begin LSN
	for _, e := range h.Parents {
		out = append(out, TimelineSpan{TLI: e.TLI, Begin: begin, End: e.SwitchPoint})
		begin = e.SwitchPoint
	}
	return append(out, TimelineSpan{TLI: h.TLI, Begin: begin, End: EndOfWAL})
}

// Includes reports whether timeline tli is h's timeline or one of its
// ancestors, and the span it contributes.
func (h *History) Includes(tli uint32) (TimelineSpan, bool) {
	for _, s := range h.Spans() {
		if s.TLI == tli {
			return s, true
		}
	}
	return TimelineSpan{}, false
}

// TimelineAt returns the timeline whose WAL holds position lsn in this
// history.
func (h *History) TimelineAt(lsn LSN) uint32 {
	for _, s := range h.Spans() {
		if lsn < s.End {
			return s.TLI
		}
	}
	return h.TLI
}
