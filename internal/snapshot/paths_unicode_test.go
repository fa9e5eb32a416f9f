package snapshot

import (
	"encoding/base64"
	"encoding/json"
	"testing"
)

// A record whose escaped path was written with other Unicode tables
// (U+1C89 printable, so not escaped) still reads, with the exact bytes.
func TestPathsEscapedByOtherUnicodeVersion(t *testing.T) {
	raw := "/\xff\u1c89"
	b := []byte(`{"time":"2026-01-01T00:00:00Z","kind":"files","paths":["/\\xff` + "\u1c89" + `"],"paths_bytes":["` +
		base64.StdEncoding.EncodeToString([]byte(raw)) + `"]}`)
	var sn Snapshot
	if err := json.Unmarshal(b, &sn); err != nil {
		t.Fatal(err)
	}
	if len(sn.Paths) != 1 || sn.Paths[0] != raw {
		t.Fatalf("paths %q", sn.Paths)
	}
}
