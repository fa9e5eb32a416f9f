package pgmeta

import (
	"encoding/json"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// WithPGControl replaces the pg_control blob under every spelling the
// decoder reads as it, keeps every other field, and refuses details that
// are not an object.
func TestWithPGControl(t *testing.T) {
	old, blob := id.Hash([]byte("old")), id.Hash([]byte("new"))
	in := `{"PG_CONTROL_BLOB":"` + old.String() + `","start_wal":"000000010000000000000002","future_field":[1,2]}`
	out, err := WithPGControl(json.RawMessage(in), blob)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 || string(m["future_field"]) != "[1,2]" || string(m["start_wal"]) != `"000000010000000000000002"` {
		t.Errorf("details after WithPGControl: %s", out)
	}
	bi, err := Info(&snapshot.Snapshot{Kind: snapshot.KindPostgres, Extra: out})
	if err != nil || bi.PGControl != blob {
		t.Errorf("pg_control after WithPGControl: %v, %v; want %s", bi.PGControl, err, blob)
	}
	for _, bad := range []string{`null`, `[]`, `"x"`, `{`} {
		if _, err := WithPGControl(json.RawMessage(bad), blob); err == nil {
			t.Errorf("WithPGControl(%s) accepted", bad)
		}
	}
}
