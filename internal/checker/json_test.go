package checker

import (
	"encoding/json"
	"strings"
	"testing"
)

// A damaged file whose name is not UTF-8 is named exactly in JSON.
func TestSnapshotReportJSON(t *testing.T) {
	b, err := json.Marshal(SnapshotReport{ID: "x", Paths: []string{"/srv"}, Files: []string{"/srv/a", "/srv/Stra\xdfe.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"x","time":"0001-01-01T00:00:00Z","paths":["/srv"],"damaged_files":["/srv/a","/srv/Stra\\xdfe.txt"],"damaged_files_bytes":["L3Nydi9h","L3Nydi9TdHJh32UudHh0"]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	if b, _ := json.Marshal(SnapshotReport{Paths: []string{"/srv"}}); strings.Contains(string(b), "_bytes") {
		t.Errorf("bytes fields where every path is UTF-8: %s", b)
	}
}
