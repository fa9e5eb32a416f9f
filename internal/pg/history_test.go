package pg

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseHistory(t *testing.T) {
	data := "1\t0/3000000\tno recovery target specified\n" +
		"\n" +
		"# a comment PostgreSQL also skips\n" +
		"  2\t0/5000A28\tbefore 2024-05-01 12:00:00.123456+00\n" +
		"4 1/0\n"
	h, err := ParseHistory(5, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := &History{TLI: 5, Parents: []HistoryEntry{
		{1, 0x3000000, "no recovery target specified"},
		{2, 0x5000A28, "before 2024-05-01 12:00:00.123456+00"},
		{4, 1 << 32, ""},
	}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("ParseHistory = %+v, want %+v", h, want)
	}
	spans := h.Spans()
	wantSpans := []TimelineSpan{{1, 0, 0x3000000}, {2, 0x3000000, 0x5000A28}, {4, 0x5000A28, 1 << 32}, {5, 1 << 32, EndOfWAL}}
	if !reflect.DeepEqual(spans, wantSpans) {
		t.Errorf("Spans = %v, want %v", spans, wantSpans)
	}
	for _, tc := range []struct {
		lsn  LSN
		want uint32
	}{{0, 1}, {0x2FFFFFF, 1}, {0x3000000, 2}, {0x5000A27, 2}, {0x5000A28, 4}, {1<<32 - 1, 4}, {1 << 32, 5}, {EndOfWAL - 1, 5}} {
		if got := h.TimelineAt(tc.lsn); got != tc.want {
			t.Errorf("TimelineAt(%s) = %d, want %d", tc.lsn, got, tc.want)
		}
	}
	if _, ok := h.Includes(3); ok {
		t.Error("timeline 3 is not an ancestor of 5 here")
	}
	if s, ok := h.Includes(2); !ok || s.End != 0x5000A28 {
		t.Errorf("Includes(2) = %v, %v", s, ok)
	}
	again, err := ParseHistory(5, h.Format())
	if err != nil || !reflect.DeepEqual(again, h) {
		t.Errorf("Format does not round-trip: %v %+v", err, again)
	}
}

func TestParseHistoryEmptyIsTimelineOne(t *testing.T) {
	h, err := ParseHistory(1, nil)
	if err != nil || len(h.Parents) != 0 || h.TimelineAt(12345) != 1 {
		t.Errorf("empty history: %+v, %v", h, err)
	}
}

func TestParseHistoryRejects(t *testing.T) {
	tests := []struct {
		tli     uint32
		data    string
		errPart string
	}{
		{2, "x\t0/3000000\treason\n", "timeline ID"},
		{2, "0\t0/3000000\n", "timeline ID"},
		{2, "1\n", "switch point"},
		{2, "1\t3000000\n", "switch point"},
		{2, "1\t0/30000000000\n", "switch point"},
		{3, "2\t0/5000000\n1\t0/6000000\n", "must increase"},
		{3, "1\t0/5000000\n2\t0/4000000\n", "before the previous"},
		{2, "2\t0/5000000\n", "not older"},
		{2, "3\t0/5000000\n", "not older"},
		{0, "", "timeline 0"},
		{2, "99999999999\t0/1\n", "timeline ID"},
	}
	for _, tc := range tests {
		_, err := ParseHistory(tc.tli, []byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.errPart) {
			t.Errorf("ParseHistory(%d, %q): %v, want an error containing %q", tc.tli, tc.data, err, tc.errPart)
		}
	}
}

func FuzzParseHistory(f *testing.F) {
	f.Add(uint32(3), []byte("1\t0/3000000\tno recovery target specified\n2\t0/5000A28\tat restore point \"x\"\n"))
	f.Add(uint32(2), []byte("# c\n\n1 0/0\n"))
	f.Fuzz(func(t *testing.T, tli uint32, data []byte) {
		h, err := ParseHistory(tli, data)
		if err != nil {
			return
		}
		spans := h.Spans()
		if spans[len(spans)-1].TLI != tli {
			t.Fatalf("last span is not the timeline itself: %v", spans)
		}
		for i := 1; i < len(spans); i++ {
			if spans[i].TLI <= spans[i-1].TLI || spans[i].Begin != spans[i-1].End || spans[i].Begin < spans[i-1].Begin {
				t.Fatalf("spans out of order: %v", spans)
			}
		}
		again, err := ParseHistory(tli, h.Format())
		if err != nil || !reflect.DeepEqual(again.Parents, h.Parents) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, h, again)
		}
	})
}
