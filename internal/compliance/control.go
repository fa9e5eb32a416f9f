// Package compliance evaluates a repository against the controls of
// compliance frameworks (SOX, PCI DSS, GDPR, FINRA, ISO/IEC 27001): each
// control is checked against evidence read from the repository (its
// snapshots, data classes, legal holds, configuration, key slots) and its
// audit log, and cites the audit records it rests on, which a report
// proves included in a signed checkpoint (internal/audit). A control
// without evidence is reported as such, never as passed. docs/compliance.md
// lists the controls, their clauses and their rules.
package compliance

import (
	"fmt"
	"slices"
	"strings"
)

// Statuses of a control.
const (
	Pass          = "pass"
	Fail          = "fail"
	NoEvidence    = "no evidence"
	NotApplicable = "not applicable"
)

// Frameworks, as --framework names them.
const (
	SOX      = "sox"
	PCIDSS   = "pci-dss"
	GDPR     = "gdpr"
	FINRA    = "finra"
	ISO27001 = "iso27001"
	All      = "all"
)

// Frameworks are the frameworks a report can be made for, in report order.
var Frameworks = []string{SOX, PCIDSS, GDPR, FINRA, ISO27001}

// frameworkNames are the frameworks' names as a report prints them.
var frameworkNames = map[string]string{
	SOX:      "SOX",
	PCIDSS:   "PCI DSS 4.0",
	GDPR:     "GDPR",
	FINRA:    "FINRA",
	ISO27001: "ISO/IEC 27001:2022",
}

// FrameworkName is how a report names framework f ("PCI DSS 4.0").
func FrameworkName(f string) string {
	if n, ok := frameworkNames[f]; ok {
		return n
	}
	return f
}

// ParseFramework checks a --framework value.
func ParseFramework(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == All || slices.Contains(Frameworks, s) {
		return s, nil
	}
	return "", fmt.Errorf("unknown framework %q: want %s or %s", s, strings.Join(Frameworks, ", "), All)
}

// Clause is a requirement of a framework that a control serves.
type Clause struct {
	Framework string `json:"framework"`
	Clause    string `json:"clause"`
	Title     string `json:"title"`
}

// The clauses the controls serve.
var (
	soxITGC      = Clause{SOX, "404 ITGC", "IT general controls: backup and recovery"}
	pci35        = Clause{PCIDSS, "3.5", "Primary account number is secured wherever it is stored (strong cryptography)"}
	pci94        = Clause{PCIDSS, "9.4", "Media with cardholder data is securely stored, distributed and destroyed"}
	pci102       = Clause{PCIDSS, "10.2", "Audit logs are implemented to support the detection of anomalies"}
	pci105       = Clause{PCIDSS, "10.5", "Audit log history is retained and available for analysis"}
	pci1210      = Clause{PCIDSS, "12.10", "Incidents are responded to immediately (business recovery and data backup)"}
	gdpr51e      = Clause{GDPR, "Art. 5(1)(e)", "Storage limitation"}
	gdpr17       = Clause{GDPR, "Art. 17", "Right to erasure (and its exceptions, legal claims)"}
	gdpr32       = Clause{GDPR, "Art. 32", "Security of processing: encryption, availability and restoration, regular testing"}
	finra4511    = Clause{FINRA, "4511", "Books and records preserved for the required period"}
	sec17a4f     = Clause{FINRA, "SEC 17a-4(f)", "Records kept in a non-rewriteable, non-erasable (WORM) format"}
	isoBackup    = Clause{ISO27001, "A.8.13", "Information backup"}
	isoLogging   = Clause{ISO27001, "A.8.15", "Logging"}
	isoCrypto    = Clause{ISO27001, "A.8.24", "Use of cryptography"}
	isoDisrupt   = Clause{ISO27001, "A.5.29", "Information security during disruption"}
	isoReadiness = Clause{ISO27001, "A.5.30", "ICT readiness for business continuity"}
)

// Label names the clause as a report prints it: "PCI DSS 4.0 10.2",
// "SEC 17a-4(f)".
func (c Clause) Label() string {
	if strings.HasPrefix(c.Clause, "SEC ") {
		return c.Clause
	}
	return FrameworkName(c.Framework) + " " + c.Clause
}

// Control is one control evaluated: what it checks, which clauses it
// serves, how it came out and why, and the audit records it rests on.
type Control struct {
	ID      string   `json:"id"`
	Title   string   `json:"title"`
	Clauses []Clause `json:"clauses"`
	Status  string   `json:"status"`
	// Summary says in one sentence why the control has its status.
	Summary string `json:"summary"`
	// Findings are the details: each breach, failure or fact found.
	Findings []string `json:"findings"`
	// Breaches are the RPO control's gaps (backup-frequency only).
	Breaches []Breach `json:"breaches,omitempty"`
	// Evidence are the positions of the audit records the control rests
	// on (at most maxEvidence, the newest; EvidenceOmitted counts the
	// rest), each proved in the report's evidence section.
	Evidence        []uint64 `json:"evidence"`
	EvidenceOmitted int      `json:"evidence_omitted,omitempty"`
}

// maxEvidence bounds the records one control cites.
const maxEvidence = 100

func (c *Control) cite(pos ...uint64) { c.Evidence = append(c.Evidence, pos...) }

func (c *Control) find(format string, args ...any) {
	c.Findings = append(c.Findings, fmt.Sprintf(format, args...))
}

// finish sorts and bounds the evidence.
func (c *Control) finish() {
	slices.Sort(c.Evidence)
	c.Evidence = slices.Compact(c.Evidence)
	if n := len(c.Evidence); n > maxEvidence {
		c.EvidenceOmitted = n - maxEvidence
		c.Evidence = c.Evidence[n-maxEvidence:]
	}
	if c.Evidence == nil {
		c.Evidence = []uint64{}
	}
	if c.Findings == nil {
		c.Findings = []string{}
	}
}

// serves reports whether c serves a clause of framework f (All: any).
func (c *Control) serves(f string) bool {
	if f == All {
		return true
	}
	for _, cl := range c.Clauses {
		if cl.Framework == f {
			return true
		}
	}
	return false
}

// only keeps the clauses of framework f (All: every one).
func (c *Control) only(f string) {
	if f == All {
		return
	}
	c.Clauses = slices.DeleteFunc(c.Clauses, func(cl Clause) bool { return cl.Framework != f })
}
