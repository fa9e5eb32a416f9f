package main

import (
	"encoding/json"
	"testing"

	"github.com/nestguard/nestguard/internal/audit"
)

// audit log --json keeps each record's position next to the record's own
// encoding (with args_bytes when an argument is not UTF-8).
func TestAuditRecordJSONPosition(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(auditRecordJSON{7, &audit.Record{Command: "backup", Args: []string{"/srv/\xff"}}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Position  uint64   `json:"position"`
		Command   string   `json:"command"`
		ArgsBytes [][]byte `json:"args_bytes"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.Position != 7 || got.Command != "backup" || len(got.ArgsBytes) != 1 || string(got.ArgsBytes[0]) != "/srv/\xff" {
		t.Errorf("%s: %+v %v", b, got, err)
	}
}
