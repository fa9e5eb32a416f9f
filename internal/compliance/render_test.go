package compliance

import (
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/audit"
)

// The text and HTML forms show every control with its status, findings
// and breaches; the HTML needs nothing outside itself and escapes what
// the evidence says.
func TestRender(t *testing.T) {
	w := newWorld()
	w.backup(1, t0.Add(time.Hour), "ledger", true)
	w.backup(2, t0.Add(4*time.Hour), "ledger", true)
	r := w.record(t0.Add(5*time.Hour), "restore", "error")
	r.Message = `<script>alert("x")</script>`
	w.ev.To = t0.Add(6 * time.Hour)
	rep, err := Evaluate(w.ev, All, t0)
	if err != nil {
		t.Fatal(err)
	}
	var text, html strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Controls {
		if !strings.Contains(text.String(), "] "+c.ID+": ") || !strings.Contains(html.String(), `id="`+c.ID+`"`) {
			t.Errorf("control %s missing", c.ID)
		}
	}
	for _, want := range []string{"[FAIL] backup-frequency", "3h without a backup", "audit evidence: none"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	h := html.String()
	if strings.Contains(h, "<script") || strings.Contains(h, "http") || !strings.Contains(h, "&lt;script&gt;") {
		t.Errorf("HTML with a script, a URL, or the record's message unescaped")
	}
	if !strings.Contains(h, "<style>") || !strings.Contains(h, "@media print") || !strings.Contains(h, "<td class=\"num\">3h</td>") {
		t.Errorf("HTML without its style, print style or the breach's length")
	}
}

// TestRenderNoProofOfDamagedLog: a report on a log that does not verify
// has no audit evidence, and the text says why, not that the log is
// empty.
func TestRenderNoProofOfDamagedLog(t *testing.T) {
	w := newWorld()
	w.backup(1, t0.Add(time.Hour), "ledger", true)
	w.ev.Log.Problems = []string{"records 3 to 4 are missing"}
	w.ev.To = t0.Add(2 * time.Hour)
	rep, err := Evaluate(w.ev, All, t0)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if s := text.String(); strings.Contains(s, "the audit log is empty") || !strings.Contains(s, "audit evidence: none: the audit log was empty or did not verify") {
		t.Errorf("text of a report on a damaged log:\n%s", s)
	}
}

// TestCheckClaims: what the evidence says of a record is compared field
// by field with the record; a missing record is a problem too.
func TestCheckClaims(t *testing.T) {
	rec := &audit.Record{Time: t0, User: "alice", Host: "db1", Command: "restore", Outcome: audit.Failed}
	ae := &AuditEvidence{Records: []EvidenceRecord{
		{Position: 1, Time: t0.In(time.FixedZone("x", 3600)), User: "alice", Host: "db1", Command: "restore", Outcome: audit.Failed},
		{Position: 2, Time: t0, User: "alice", Host: "db1", Command: "restore", Outcome: audit.Success},
		{Position: 3, Time: t0, User: "alice", Host: "db1", Command: "restore", Outcome: audit.Failed},
	}}
	got := ae.CheckClaims(map[uint64]*audit.Record{1: rec, 2: rec})
	if len(got) != 2 || !strings.Contains(got[0], `record 2: the report says outcome "success", the record "error"`) || !strings.Contains(got[1], "record 3: not in the log") {
		t.Errorf("CheckClaims: %q", got)
	}
}
