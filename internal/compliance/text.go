package compliance

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// statusLabel is how text and HTML show a status.
func statusLabel(s string) string { return strings.ToUpper(s) }

// clauseList names clauses as "PCI DSS 4.0 10.2; GDPR Art. 32".
func clauseList(cs []Clause) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Label()
	}
	return strings.Join(parts, "; ")
}

func (rep *Report) title() string {
	if rep.Framework == All {
		return "Compliance report: SOX, PCI DSS 4.0, GDPR, FINRA and SEC 17a-4, ISO/IEC 27001:2022"
	}
	return "Compliance report: " + FrameworkName(rep.Framework)
}

func (rep *Report) period() string {
	from := "the beginning of the audit log"
	if !rep.From.IsZero() {
		from = fmtTime(rep.From)
	}
	return from + " to " + fmtTime(rep.To)
}

func (rep *Report) countLine() string {
	var parts []string
	for _, s := range []string{Pass, Fail, NoEvidence, NotApplicable} {
		parts = append(parts, fmt.Sprintf("%d %s", rep.Counts[s], s))
	}
	return strings.Join(parts, ", ")
}

func evidenceList(c *Control) string {
	if len(c.Evidence) == 0 {
		return "none"
	}
	parts := make([]string, len(c.Evidence))
	for i, p := range c.Evidence {
		parts[i] = fmt.Sprint(p)
	}
	s := "audit records " + strings.Join(parts, ", ")
	if c.EvidenceOmitted > 0 {
		s += fmt.Sprintf(" (and %d older)", c.EvidenceOmitted)
	}
	return s
}

// WriteText writes the report for a reader: each control with its status,
// clauses, findings and evidence, then the assets and how to check the
// evidence.
func (rep *Report) WriteText(w io.Writer) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "%s\n", rep.title())
	fmt.Fprintf(b, "repository:  %s (id %s)\n", rep.Repository, rep.RepositoryID)
	fmt.Fprintf(b, "period:      %s\n", rep.period())
	fmt.Fprintf(b, "generated:   %s\n", fmtTime(rep.Generated))
	fmt.Fprintf(b, "status:      %s (%s)\n", statusLabel(rep.Status), rep.countLine())
	for i := range rep.Controls {
		c := &rep.Controls[i]
		fmt.Fprintf(b, "\n[%s] %s: %s\n", statusLabel(c.Status), c.ID, c.Title)
		fmt.Fprintf(b, "  serves:   %s\n", clauseList(c.Clauses))
		fmt.Fprintf(b, "  result:   %s\n", c.Summary)
		for _, f := range c.Findings {
			fmt.Fprintf(b, "  - %s\n", f)
		}
		fmt.Fprintf(b, "  evidence: %s\n", evidenceList(c))
	}
	if len(rep.Assets) > 0 {
		fmt.Fprintf(b, "\nassets:\n")
		for _, a := range rep.Assets {
			class, rpo := a.Class, "-"
			if class == "" {
				class = "(no class)"
			}
			if a.RPOSeconds > 0 {
				rpo = fmtDur(time.Duration(a.RPOSeconds * float64(time.Second)))
			}
			fmt.Fprintf(b, "  %s  class %s  %d snapshots  last %s  RPO %s  breaches %d\n", a.Name, class, a.Snapshots, fmtTime(a.Last), rpo, a.Breaches)
		}
	}
	if ae := rep.Audit; ae != nil {
		fmt.Fprintf(b, "\naudit evidence: log %s, checkpoint of size %d; %d cited records, each with an inclusion proof in --format json.\n", ae.Log, ae.Size, len(ae.Records))
		fmt.Fprintf(b, "Check them with the verifier key: nestguard audit verify --key KEY --proof REPORT.json\n")
		fmt.Fprintf(b, "checkpoint:\n%s", ae.Checkpoint)
	} else {
		fmt.Fprintf(b, "\naudit evidence: none: the audit log was empty or did not verify when the report was made, so nothing in it is proved\n")
	}
	return b.Flush()
}
