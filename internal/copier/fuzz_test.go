package copier

import (
	"encoding/json"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// The details of a stored snapshot are untrusted: mapping pg_control in
// them must fail cleanly, never panic, and keep every other field.
func FuzzPGControl(f *testing.F) {
	f.Add([]byte(`{"pg_control_blob":"` + id.Hash([]byte("x")).String() + `","start_wal":"000000010000000000000001"}`))
	f.Add([]byte(`{"pg_control_blob":""}`))
	f.Add([]byte(`{"pg_control_blob":7}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, extra []byte) {
		sn := &snapshot.Snapshot{Kind: snapshot.KindPostgres, Extra: extra}
		bid, err := pgControlBlob(sn)
		if err != nil || bid.IsNull() {
			return
		}
		nid := id.Hash(extra)
		out, err := pgmeta.WithPGControl(extra, nid)
		if err != nil {
			t.Fatalf("pg_control %s found but not mapped: %v", bid.Short(), err)
		}
		var before, after map[string]json.RawMessage
		json.Unmarshal(extra, &before)
		if err := json.Unmarshal(out, &after); err != nil || len(after) != len(before) {
			t.Fatalf("mapped details %s: %v", out, err)
		}
		got, err := pgControlBlob(&snapshot.Snapshot{Kind: snapshot.KindPostgres, Extra: out})
		if err != nil || got != nid {
			t.Fatalf("after mapping: %v, %v", got, err)
		}
	})
}
