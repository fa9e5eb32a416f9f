// Package audit keeps the repository's tamper-evident audit trail: a
// record of every command that changes or reads protected data, in an
// append-only log of write-once objects whose order and content are fixed
// by an RFC 6962 Merkle tree, with a checkpoint (tree size and root) after
// every append, signed by an Ed25519 audit key that is not the repository's
// data key. Anyone with the verifier key and the stored objects can check
// the log without the repository passphrase (Verify). docs/audit.md gives
// the design and its threat model, docs/format.md the bytes.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nestguard/nestguard/internal/crypto"
	"github.com/nestguard/nestguard/internal/tree"
)

// Outcomes of a command. Started is not an end: it is the outcome of the
// record a command that removes appends before it removes anything
// (Intent says what), and the command's own record then follows with its
// outcome and IntentRecord. A Started record that no record names is a
// command that never finished (killed, crashed, the host lost).
const (
	Success = "success"
	Partial = "partial"
	Failed  = "error"
	Started = "started"
)

// Record says who did what, on what, when, and how it ended.
type Record struct {
	Time time.Time `json:"time"`
	// Who: the OS user and host, and the key slot that unlocked the
	// repository (a key file opens a slot too).
	User    string `json:"user"`
	Host    string `json:"host"`
	KeySlot string `json:"key_slot,omitempty"`
	// What: the command ("backup", "pg archive-wal", ...) and its
	// effective options, secrets never.
	Command string            `json:"command"`
	Options map[string]string `json:"options,omitempty"`
	// On what: the repository and the command's arguments (paths,
	// snapshot ids, databases).
	Repository string   `json:"repository"`
	Args       []string `json:"args,omitempty"`
	// Outcome is Success, Partial or Failed; Message the error, if any.
	Outcome string `json:"outcome"`
	Message string `json:"message,omitempty"`
	// Wrote are the ids of what the command stored ("snapshot <id>",
	// "wal <name>", "hold <id>").
	Wrote []string `json:"wrote,omitempty"`
	// Duration is how long the command ran.
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Batch, for a record of batched calls (pg archive-wal): one line
	// per call, in order.
	Batch []BatchItem `json:"batch,omitempty"`
	// Intent, in a Started record, is what the command is about to
	// remove ("-snapshots/<id>", "-keys/<id>", "hold <snapshot> case
	// <case>").
	Intent []string `json:"intent,omitempty"`
	// IntentRecord, in the record of a command that appended a Started
	// record, is that record's position.
	IntentRecord *uint64 `json:"intent_record,omitempty"`
}

// BatchItem is one call of a batched command.
type BatchItem struct {
	Time    time.Time `json:"time"`
	Arg     string    `json:"arg"`
	Outcome string    `json:"outcome"`
	Message string    `json:"message,omitempty"`
}

func (r *Record) check() error {
	switch {
	case r.Time.IsZero():
		return errors.New("audit record: no time")
	case r.Command == "":
		return errors.New("audit record: no command")
	case r.Outcome != Success && r.Outcome != Partial && r.Outcome != Failed && r.Outcome != Started:
		return fmt.Errorf("audit record: unknown outcome %q", r.Outcome)
	}
	return nil
}

// maxRecordLen bounds one sealed record.
const maxRecordLen = 1 << 20

// adRecord is the associated data of a sealed record of log logID.
func adRecord(logID string) []byte {
	return []byte("nestguard v2\x00audit record\x00" + logID)
}

// adSigningKey is the associated data of the sealed signing key of log logID.
func adSigningKey(logID string) []byte {
	return []byte("nestguard v2\x00audit key\x00" + logID)
}

// sealRecord seals r as a record of log logID: 0x00 (the raw-body flag of
// every sealed object) then the JSON, under the audit key.
func sealRecord(k *crypto.Key, logID string, r *Record) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	js, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding audit record: %w", err)
	}
	body := append([]byte{0}, js...)
	sealed, err := k.Seal(nil, body, adRecord(logID))
	if err != nil {
		return nil, fmt.Errorf("sealing audit record: %w", err)
	}
	if len(sealed) > maxRecordLen {
		return nil, fmt.Errorf("audit record of %s: %d bytes sealed, more than the limit of %d", r.Command, len(sealed), maxRecordLen)
	}
	return sealed, nil
}

// openRecord authenticates and decodes a sealed record of log logID.
func openRecord(k *crypto.Key, logID string, sealed []byte) (*Record, error) {
	body, err := k.Open(nil, sealed, adRecord(logID))
	if err != nil {
		return nil, fmt.Errorf("audit record does not open with this repository's key: %w", err)
	}
	if len(body) == 0 || body[0] != 0 {
		return nil, errors.New("audit record: unknown body flag")
	}
	var r Record
	if err := json.Unmarshal(body[1:], &r); err != nil {
		return nil, fmt.Errorf("audit record: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Arguments are bytes, as the kernel keeps them (a path in another
// encoding). JSON strings cannot carry bytes that are not UTF-8, so when
// an argument is not, the record stores every argument's escaped form
// (tree.Escape) in "args" and the exact bytes, in the same order, in
// "args_bytes" (base64), as a snapshot does with its paths. In memory
// Args always holds the exact bytes.

// MarshalJSON encodes r, with the exact bytes of its arguments when one
// is not valid UTF-8.
func (r Record) MarshalJSON() ([]byte, error) {
	type plain Record
	w := struct {
		plain
		ArgsBytes [][]byte `json:"args_bytes,omitempty"`
	}{plain: plain(r)}
	w.Args, w.ArgsBytes = tree.ForJSONList(r.Args)
	return json.Marshal(w)
}

// UnmarshalJSON decodes a record, restoring the exact bytes of its
// arguments.
func (r *Record) UnmarshalJSON(b []byte) error {
	type plain Record
	w := struct {
		*plain
		ArgsBytes [][]byte `json:"args_bytes"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.ArgsBytes == nil {
		return nil
	}
	if len(w.ArgsBytes) != len(r.Args) {
		return errors.New("audit record: args and args_bytes differ in length")
	}
	for i, raw := range w.ArgsBytes {
		if !tree.IsEscapeOf(r.Args[i], string(raw)) {
			return fmt.Errorf("audit record: argument %q does not match its args_bytes", r.Args[i])
		}
		r.Args[i] = string(raw)
	}
	return nil
}
