package needs

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/snapshot"
)

func pgSnapshot(extra string) *snapshot.Snapshot {
	return &snapshot.Snapshot{ID: id.Hash([]byte(extra)), Kind: snapshot.KindPostgres, Extra: json.RawMessage(extra)}
}

func TestOf(t *testing.T) {
	ctl := id.Hash([]byte("pg_control"))
	n, err := Of(pgSnapshot(`{"start_wal":"000000010000000000000002","stop_wal":"000000010000000000000004","wal_segment_size":16777216,"pg_control_blob":"` + ctl.String() + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"000000010000000000000002", "000000010000000000000003", "000000010000000000000004"}; !slices.Equal(n.WAL, want) {
		t.Errorf("WAL = %v, want %v", n.WAL, want)
	}
	if len(n.Blobs) != 1 || n.Blobs[0].ID != ctl {
		t.Errorf("Blobs = %v", n.Blobs)
	}
	files, err := Of(&snapshot.Snapshot{Kind: snapshot.KindFiles, Extra: json.RawMessage(`{"start_wal":"x"}`)})
	if err != nil || len(files.WAL) != 0 || len(files.Blobs) != 0 {
		t.Errorf("files snapshot: %+v, %v", files, err)
	}
	if _, err := Of(pgSnapshot(`{"start_wal":"000000010000000000000004","stop_wal":"000000010000000000000002"}`)); err == nil {
		t.Error("a reversed WAL range was accepted")
	}
}

func TestWALObjects(t *testing.T) {
	names := []string{
		"000000010000000000000001", "000000010000000000000002", "000000010000000000000002.00000028.backup",
		"000000010000000000000003", "000000010000000000000004", "00000001.history", "00000002.history",
		"000000020000000000000003", "garbage",
	}
	n, err := Of(pgSnapshot(`{"start_wal":"000000010000000000000002","stop_wal":"000000010000000000000003"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := n.WALObjects(names)
	want := []string{"00000001.history", "000000010000000000000002", "000000010000000000000002.00000028.backup", "000000010000000000000003"}
	if !slices.Equal(got, want) {
		t.Errorf("WALObjects = %v, want %v", got, want)
	}
}

// A snapshot's stored details are untrusted: decoding them never panics
// and the WAL objects named are only ever listed ones.
func FuzzWALObjects(f *testing.F) {
	f.Add(`{"start_wal":"000000010000000000000002","stop_wal":"000000010000000000000003"}`, "000000010000000000000002")
	f.Add(`{"start_wal":"","stop_wal":"0"}`, "00000001.history")
	f.Fuzz(func(t *testing.T, extra, name string) {
		n, err := Of(pgSnapshot(extra))
		if err != nil {
			return
		}
		names := []string{name, "000000010000000000000002", "00000001.history"}
		for _, got := range n.WALObjects(names) {
			if !slices.Contains(names, got) {
				t.Fatalf("WALObjects invented %q", got)
			}
		}
	})
}
