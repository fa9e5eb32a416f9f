package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nestguard/nestguard/internal/tree"
)

// Paths are bytes, as the kernel keeps them. JSON strings cannot carry
// bytes that are not UTF-8, so when a path is not, the record stores every
// path's escaped form (tree.Escape) in "paths" and the exact bytes, in
// the same order, in "paths_bytes" (base64, as encoding/json writes
// []byte). In memory Paths always holds the exact bytes.

// MarshalJSON encodes sn, with the exact bytes of its paths when one is
// not valid UTF-8.
func (sn Snapshot) MarshalJSON() ([]byte, error) {
	type plain Snapshot
	w := struct {
		plain
		PathsBytes [][]byte `json:"paths_bytes,omitempty"`
	}{plain: plain(sn)}
	w.Paths, w.PathsBytes = tree.ForJSONList(sn.Paths)
	return json.Marshal(w)
}

// UnmarshalJSON decodes a snapshot record, restoring the exact bytes of
// its paths.
func (sn *Snapshot) UnmarshalJSON(b []byte) error {
	type plain Snapshot
	w := struct {
		*plain
		PathsBytes [][]byte `json:"paths_bytes"`
	}{plain: (*plain)(sn)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.PathsBytes == nil {
		return nil
	}
	if len(w.PathsBytes) != len(sn.Paths) {
		return errors.New("snapshot: paths and paths_bytes differ in length")
	}
	for i, raw := range w.PathsBytes {
		if !tree.IsEscapeOf(sn.Paths[i], string(raw)) {
			return fmt.Errorf("snapshot: path %q does not match its paths_bytes", sn.Paths[i])
		}
		sn.Paths[i] = string(raw)
	}
	return nil
}
