package pgmeta

import (
	"slices"
	"strings"
	"testing"
)

func TestSegmentNames(t *testing.T) {
	tests := []struct {
		lsn     string
		tli     uint32
		segSize int64
		want    string
	}{
		{"0/3000028", 1, 16 << 20, "000000010000000000000003"},
		{"0/0", 1, 16 << 20, "000000010000000000000000"},
		{"0/FFFFFFFF", 2, 16 << 20, "0000000200000000000000FF"},
		{"1/0", 1, 16 << 20, "000000010000000100000000"},
		{"16/B374D848", 0xA, 16 << 20, "0000000A00000016000000B3"},
		{"1/40000000", 1, 1 << 30, "000000010000000100000001"},
		{"0/FFFFFFFF", 1, 1 << 30, "000000010000000000000003"},
		{"0/FFF00000", 1, 1 << 20, "000000010000000000000FFF"},
		{"7/100000", 3, 1 << 20, "000000030000000700000001"},
		{"FFFFFFFF/FFFFFFFF", 0xFFFFFFFF, 16 << 20, "FFFFFFFFFFFFFFFF000000FF"},
		{"0/2000000", 1, 64 << 20, "000000010000000000000000"},
		{"0/4000000", 1, 64 << 20, "000000010000000000000001"},
	}
	for _, tc := range tests {
		lsn, err := ParseLSN(tc.lsn)
		if err != nil {
			t.Fatal(err)
		}
		got := SegmentOf(lsn, tc.tli, tc.segSize)
		if got != tc.want {
			t.Errorf("SegmentOf(%s, %d, %d MiB) = %s, want %s", tc.lsn, tc.tli, tc.segSize>>20, got, tc.want)
			continue
		}
		s, err := ParseSegment(got, tc.segSize)
		if err != nil {
			t.Errorf("ParseSegment(%s): %v", got, err)
			continue
		}
		if s.TLI != tc.tli || s.StartLSN(tc.segSize) > lsn || lsn-s.StartLSN(tc.segSize) >= LSN(tc.segSize) {
			t.Errorf("ParseSegment(%s) = %+v: start %s does not hold %s", got, s, s.StartLSN(tc.segSize), tc.lsn)
		}
	}
}

func TestParseSegmentRejects(t *testing.T) {
	tests := []struct {
		name    string
		segSize int64
		errPart string
	}{
		{"000000010000000000000100", 16 << 20, "wrong segment size"}, // only 256 per log
		{"000000010000000000000004", 1 << 30, "wrong segment size"},  // only 4 per log
		{"000000000000000000000001", 16 << 20, "timeline 0"},
		{"00000001000000000000000a", 16 << 20, "not a WAL segment"},
		{"00000001000000000000001", 16 << 20, "not a WAL segment"},
		{"000000010000000000000001.partial", 16 << 20, "not a WAL segment"},
		{"000000010000000000000001", 3 << 20, "invalid WAL segment size"},
		{"000000010000000000000001", 512 << 10, "invalid WAL segment size"},
		{"000000010000000000000001", 2 << 30, "invalid WAL segment size"},
		{"000000010000000000000001", 0, "invalid WAL segment size"},
	}
	for _, tc := range tests {
		_, err := ParseSegment(tc.name, tc.segSize)
		if err == nil || !strings.Contains(err.Error(), tc.errPart) {
			t.Errorf("ParseSegment(%q, %d): %v, want an error containing %q", tc.name, tc.segSize, err, tc.errPart)
		}
	}
	// The same name is valid with smaller segments.
	if s, err := ParseSegment("000000010000000000000100", 1<<20); err != nil || s.No != 0x100 {
		t.Errorf("1 MiB segment 0x100: %+v, %v", s, err)
	}
}

func TestValidSegmentSize(t *testing.T) {
	for n := int64(1); n <= 4<<30; n <<= 1 {
		want := n >= 1<<20 && n <= 1<<30
		if ValidSegmentSize(n) != want {
			t.Errorf("ValidSegmentSize(%d) = %v", n, !want)
		}
	}
	for _, n := range []int64{-16 << 20, 0, 3 << 20, 16<<20 + 1} {
		if ValidSegmentSize(n) {
			t.Errorf("ValidSegmentSize(%d) = true", n)
		}
	}
}

func TestNextSegmentCrossesLogBoundary(t *testing.T) {
	tests := []struct {
		name    string
		segSize int64
		want    string
	}{
		{"0000000100000000000000FE", 16 << 20, "0000000100000000000000FF"},
		{"0000000100000000000000FF", 16 << 20, "000000010000000100000000"},
		{"000000010000000000000003", 1 << 30, "000000010000000100000000"},
		{"000000010000000000000FFF", 1 << 20, "000000010000000100000000"},
		{"00000002000000050000007F", 32 << 20, "000000020000000600000000"},
	}
	for _, tc := range tests {
		got, err := NextSegment(tc.name, tc.segSize)
		if err != nil || got != tc.want {
			t.Errorf("NextSegment(%s, %d MiB) = %s, %v; want %s", tc.name, tc.segSize>>20, got, err, tc.want)
		}
	}
}

func TestSegmentsBetween(t *testing.T) {
	got, err := SegmentsBetween("0000000100000000000000FE", "000000010000000100000001", 16<<20)
	want := []string{"0000000100000000000000FE", "0000000100000000000000FF", "000000010000000100000000", "000000010000000100000001"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("SegmentsBetween across a log boundary = %v, %v", got, err)
	}
	if got, err := SegmentsBetween("000000010000000000000005", "000000010000000000000005", 16<<20); err != nil || len(got) != 1 {
		t.Errorf("one segment: %v, %v", got, err)
	}
	for _, bad := range [][2]string{
		{"000000010000000000000005", "000000010000000000000004"},         // backwards
		{"000000010000000000000005", "000000020000000000000006"},         // two timelines
		{"000000010000000000000000", "000000010000FFFF00000000"},         // absurdly many
		{"000000010000000000000005", "00000001000000000000000G"},         // not a name
		{"00000001.history", "000000010000000000000006"},                 // not a segment
		{"000000010000000000000005", "000000010000000000000006.partial"}, // not a segment
	} {
		if got, err := SegmentsBetween(bad[0], bad[1], 16<<20); err == nil {
			t.Errorf("SegmentsBetween(%s, %s) = %d names, want an error", bad[0], bad[1], len(got))
		}
	}
}

func TestWALFileKinds(t *testing.T) {
	tests := []struct {
		name                                   string
		segment, history, backup, partial, wal bool
	}{
		{"000000010000000000000001", true, false, false, false, true},
		{"00000002.history", false, true, false, false, true},
		{"000000010000000000000002.00000028.backup", false, false, true, false, true},
		{"000000010000000000000003.partial", false, false, false, true, true},
		{"00000001000000000000000a", false, false, false, false, false},
		{"0000000100000000000000011", false, false, false, false, false},
		{"0000000g.history", false, false, false, false, false},
		{"00000002.History", false, false, false, false, false},
		{"000000010000000000000002.0000002.backup", false, false, false, false, false},
		{"000000010000000000000002.00000028.backupx", false, false, false, false, false},
		{"RECOVERYXLOG", false, false, false, false, false},
		{"../00000001.history", false, false, false, false, false},
		{"", false, false, false, false, false},
	}
	for _, tc := range tests {
		got := [5]bool{IsSegment(tc.name), IsHistory(tc.name), IsBackupHistory(tc.name), IsPartial(tc.name), IsWALFileName(tc.name)}
		want := [5]bool{tc.segment, tc.history, tc.backup, tc.partial, tc.wal}
		if got != want {
			t.Errorf("%q: segment/history/backup/partial/any = %v, want %v", tc.name, got, want)
		}
	}
}

func TestHistoryFileName(t *testing.T) {
	if got := HistoryFileName(0x1A); got != "0000001A.history" {
		t.Errorf("HistoryFileName(26) = %s", got)
	}
	if tli, err := ParseHistoryFileName("0000001A.history"); err != nil || tli != 26 {
		t.Errorf("ParseHistoryFileName: %d, %v", tli, err)
	}
	for _, bad := range []string{"00000000.history", "0000001a.history", "0000001A.histor", "000000010000000000000001"} {
		if _, err := ParseHistoryFileName(bad); err == nil {
			t.Errorf("ParseHistoryFileName(%q) accepted", bad)
		}
	}
}

func FuzzParseSegment(f *testing.F) {
	f.Add("000000010000000000000003", int64(16<<20))
	f.Add("0000000100000000000000FF", int64(1<<30))
	f.Fuzz(func(t *testing.T, name string, segSize int64) {
		s, err := ParseSegment(name, segSize)
		if err != nil {
			return
		}
		if got := s.Name(segSize); got != name {
			t.Fatalf("ParseSegment(%q) = %+v, formats back as %q", name, s, got)
		}
	})
}
