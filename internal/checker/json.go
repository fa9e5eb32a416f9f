package checker

import (
	"encoding/json"

	"github.com/nestguard/nestguard/internal/tree"
)

// MarshalJSON writes r with its paths and damaged files as tree.ForJSON
// gives them: when one is not valid UTF-8, every one escaped, with the
// exact bytes (base64) in paths_bytes and damaged_files_bytes.
func (r SnapshotReport) MarshalJSON() ([]byte, error) {
	type plain SnapshotReport
	w := struct {
		plain
		PathsBytes [][]byte `json:"paths_bytes,omitempty"`
		FilesBytes [][]byte `json:"damaged_files_bytes,omitempty"`
	}{plain: plain(r)}
	w.Paths, w.PathsBytes = tree.ForJSONList(r.Paths)
	w.Files, w.FilesBytes = tree.ForJSONList(r.Files)
	return json.Marshal(w)
}
