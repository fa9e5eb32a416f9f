package compliance

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/audit"
)

// AuditEvidence is a report's evidence section: the signed checkpoint the
// report was made against and, for every record a control cites, what it
// says and its inclusion proof in that checkpoint. 'nestguard audit
// verify --proof REPORT' checks it: the checkpoint's signature with the
// verifier key, that the log passed through the checkpoint, and every
// proof.
type AuditEvidence struct {
	Log string `json:"log"`
	// Checkpoint is the signed note (tree size and root), as 'audit
	// checkpoint' prints it.
	Checkpoint string `json:"checkpoint"`
	Size       uint64 `json:"size"`
	// Verifier is the log's verifier key as the repository stores it:
	// an auditor checks with the key they were given, not this one.
	Verifier string           `json:"verifier"`
	Records  []EvidenceRecord `json:"records"`
}

// EvidenceRecord is a cited record: what it says, and its proof.
type EvidenceRecord struct {
	Position uint64    `json:"position"`
	Time     time.Time `json:"time"`
	User     string    `json:"user"`
	Host     string    `json:"host"`
	Command  string    `json:"command"`
	Outcome  string    `json:"outcome"`
	// Proof proves the record's stored bytes are at Position in the
	// checkpoint's tree.
	Proof *audit.InclusionProof `json:"proof"`
}

// Prove fills the report's evidence section from tree t (the log read up
// to the checkpoint the evidence was read at) and the records by
// position.
func (rep *Report) Prove(t *audit.Tree, verifier string, records []Record) error {
	cp := t.Checkpoint()
	ae := &AuditEvidence{Log: cp.LogID(), Checkpoint: string(cp.Note), Size: cp.Size, Verifier: verifier, Records: []EvidenceRecord{}}
	byPos := make(map[uint64]Record, len(records))
	for _, r := range records {
		byPos[r.Position] = r
	}
	var cited []uint64
	for _, c := range rep.Controls {
		cited = append(cited, c.Evidence...)
	}
	slices.Sort(cited)
	for _, pos := range slices.Compact(cited) {
		r, ok := byPos[pos]
		if !ok {
			return fmt.Errorf("compliance: a control cites record %d, which was not read", pos)
		}
		p, err := t.Prove(pos)
		if err != nil {
			return err
		}
		ae.Records = append(ae.Records, EvidenceRecord{Position: pos, Time: r.Time, User: r.User, Host: r.Host,
			Command: r.Command, Outcome: r.Outcome, Proof: p})
	}
	rep.Audit = ae
	return nil
}

// CheckClaims compares what the evidence says of each cited record (time,
// user, host, command, outcome) with the record itself, as the log holds
// it at that position (records: opened with the passphrase). An inclusion
// proof binds a record's sealed bytes, not what the report says they
// hold: this is the check of the rest, for whoever can open the records.
// It returns one problem per record that differs or is missing.
func (ae *AuditEvidence) CheckClaims(records map[uint64]*audit.Record) []string {
	var problems []string
	for _, c := range ae.Records {
		r, ok := records[c.Position]
		if !ok {
			problems = append(problems, fmt.Sprintf("record %d: not in the log, or does not open", c.Position))
			continue
		}
		var diff []string
		if !c.Time.Equal(r.Time) {
			diff = append(diff, fmt.Sprintf("time %s, the record %s", c.Time.UTC().Format(time.RFC3339Nano), r.Time.UTC().Format(time.RFC3339Nano)))
		}
		for _, f := range []struct{ name, claim, real string }{
			{"user", c.User, r.User}, {"host", c.Host, r.Host}, {"command", c.Command, r.Command}, {"outcome", c.Outcome, r.Outcome},
		} {
			if f.claim != f.real {
				diff = append(diff, fmt.Sprintf("%s %q, the record %q", f.name, f.claim, f.real))
			}
		}
		if len(diff) > 0 {
			problems = append(problems, fmt.Sprintf("record %d: the report says %s: the report was altered", c.Position, strings.Join(diff, "; ")))
		}
	}
	return problems
}
