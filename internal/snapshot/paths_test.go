package snapshot

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// Backup paths that are not UTF-8 are kept exactly.
func TestPathsNotUTF8(t *testing.T) {
	for _, paths := range [][]string{
		{"/srv/Stra\xdfe", "/srv/Stra\u00dfe", "/\xff\xfe"},
		{"/etc", "/home"},
	} {
		sn := &Snapshot{Time: time.Unix(1, 0).UTC(), Kind: KindFiles, Paths: paths, Hostname: "h"}
		b, err := json.Marshal(sn)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "paths_bytes") != (paths[0] == "/srv/Stra\xdfe") {
			t.Errorf("paths_bytes where not needed, or missing: %s", b)
		}
		var got Snapshot
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Paths, paths) || got.Hostname != "h" || !got.Time.Equal(sn.Time) {
			t.Errorf("paths %q came back as %q: %s", paths, got.Paths, b)
		}
	}
	for _, bad := range []string{
		`{"paths":["/a"],"paths_bytes":["L2E=","L2I="]}`,
		`{"paths":["/a"],"paths_bytes":["L2I="]}`,
	} {
		var sn Snapshot
		if err := json.Unmarshal([]byte(bad), &sn); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
