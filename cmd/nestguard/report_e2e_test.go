package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/chromiumtest"
	"github.com/nestguard/nestguard/internal/compliance"
	"github.com/nestguard/nestguard/internal/pgtest"
)

type complianceDoc struct {
	JSONVersion int `json:"json_version"`
	compliance.Report
}

// report runs report compliance --format json with args and returns the
// document and the exit code.
func (e *env) report(cfg string, args ...string) (complianceDoc, int) {
	e.t.Helper()
	out := filepath.Join(e.dir, "report.json")
	r := e.run(append([]string{"--config", cfg, "report", "compliance", "--format", "json", "--output", out}, args...)...)
	var doc complianceDoc
	b, err := os.ReadFile(out)
	if err != nil {
		e.t.Fatalf("report compliance: exit %d, no report: %v\n%s", r.code, err, r.stderr)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		e.t.Fatalf("report compliance --format json: %v\n%s", err, b)
	}
	return doc, r.code
}

func (d complianceDoc) control(t *testing.T, id string) compliance.Control {
	t.Helper()
	for _, c := range d.Controls {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("the report has no control %s", id)
	return compliance.Control{}
}

func hasFinding(c compliance.Control, s string) bool {
	return slices.ContainsFunc(c.Findings, func(f string) bool { return strings.Contains(f, s) }) || strings.Contains(c.Summary, s)
}

// TestComplianceReport: real commands, then report compliance --format
// json: an RPO breach between two backups of a class and one open at the
// end of the period, each with its length; "no evidence" while no verify
// --read-data and no restore ran, pass after; holds placed and released
// with who; a snapshot deleted behind nestguard's back; every cited record
// proved in the report's checkpoint, which 'audit verify --proof' checks
// with the verifier key alone, and refuses once a proof is altered.
func TestComplianceReport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	cfg := filepath.Join(e.dir, "nestguard.toml")
	writeFile(t, cfg, `
[class.ledger]
floor = "7y"
rpo   = "1h"
rto   = "1h"

[class.scratch]
keep-last = 1
`, 0o600)
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 7, 5, 10_000)
	now := time.Now().UTC().Truncate(time.Second)
	t1, t2, t3 := now.Add(-5*time.Hour), now.Add(-4*time.Hour-30*time.Minute), now.Add(-10*time.Minute)
	for _, ts := range []time.Time{t1, t2, t3} {
		e.backupAt(src, ts.Format(time.RFC3339), "--config", cfg, "--class", "ledger")
	}
	scratch := e.backupJSON(src, "--config", cfg, "--class", "scratch")["snapshot"].(string)
	e.must("--config", cfg, "forget", scratch[:8])

	to := now.Add(20 * time.Minute).Format(time.RFC3339)
	doc, code := e.report(cfg, "--to", to)
	if code != exitError || doc.Status != compliance.Fail || doc.JSONVersion != jsonVersion {
		t.Fatalf("report: exit %d, status %s", code, doc.Status)
	}
	// The document's fields are docs/json.md's.
	raw, _ := os.ReadFile(filepath.Join(e.dir, "report.json"))
	checkJSON(t, "report compliance", string(raw), "json_version framework from? to generated repository repository_id status counts controls assets audit")
	var parts struct {
		Controls, Assets []json.RawMessage
		Audit            struct{ Records []json.RawMessage }
	}
	json.Unmarshal(raw, &parts)
	checkKeys(t, "report compliance control", string(parts.Controls[0]), "id title clauses status summary findings breaches? evidence evidence_omitted?")
	checkKeys(t, "report compliance asset", string(parts.Assets[0]), "name class? snapshots first last rpo_seconds? breaches")
	checkKeys(t, "report compliance evidence record", string(parts.Audit.Records[0]), "position time user host command outcome proof")
	freq := doc.control(t, "backup-frequency")
	if freq.Status != compliance.Fail || len(freq.Breaches) != 1 {
		t.Fatalf("backup-frequency: %s, breaches %+v", freq.Status, freq.Breaches)
	}
	if b := freq.Breaches[0]; b.Class != "ledger" || !b.From.Equal(t2) || !b.To.Equal(t3) || b.LengthSeconds != t3.Sub(t2).Seconds() || b.RPOSeconds != 3600 || b.Open {
		t.Errorf("breach %+v, want %s to %s", b, t2, t3)
	}
	for _, id := range []string{"verify-read-data", "restore-test", "copies"} {
		if c := doc.control(t, id); c.Status != compliance.NoEvidence || len(c.Evidence) != 0 {
			t.Errorf("%s before any ran: %s, evidence %v", id, c.Status, c.Evidence)
		}
	}
	if c := doc.control(t, "retention-floors"); c.Status != compliance.Pass {
		t.Errorf("retention-floors: %s: %s %v", c.Status, c.Summary, c.Findings)
	}
	if c := doc.control(t, "legal-holds"); c.Status != compliance.NotApplicable {
		t.Errorf("legal-holds without holds: %s", c.Status)
	}
	if c := doc.control(t, "object-lock"); c.Status != compliance.Fail {
		t.Errorf("object-lock of a local directory: %s", c.Status)
	}

	// Now a read-back, a restore test, a hold placed and released, a
	// failed command, and a ledger snapshot deleted outside nestguard.
	e.must("verify", "--read-data")
	e.must("restore", "latest", "--target", filepath.Join(e.dir, "out"))
	e.must("hold", "add", "latest", "--case", "SEC-2026-9", "--reason", "inquiry", "--record-only")
	e.must("hold", "release", "latest", "--case", "SEC-2026-9", "--reason", "closed")
	if r := e.run("restore", "deadbeef", "--target", filepath.Join(e.dir, "out2")); r.code != exitError {
		t.Fatalf("restore of a missing snapshot: exit %d", r.code)
	}
	// A copy to a second repository (recorded in both logs).
	dst := newEnv(t)
	dst.must("init")
	spf := filepath.Join(e.dir, "srcpass")
	writeFile(t, spf, e.pass, 0o600)
	dst.must("copy", "--from-repo", e.repo, "--to-repo", dst.repo, "--from-password-file", spf, "--all")
	if doc, _ := e.report(cfg, "--to", to); doc.control(t, "copies").Status != compliance.Pass {
		c := doc.control(t, "copies")
		t.Errorf("copies after a copy: %s: %s %v", c.Status, c.Summary, c.Findings)
	}
	if doc, _ := dst.report(cfg, "--to", to); doc.control(t, "copies").Status != compliance.NoEvidence || !hasFinding(doc.control(t, "copies"), "into this repository") {
		t.Errorf("copies of the destination: %+v", doc.control(t, "copies"))
	}
	snaps, err := filepath.Glob(filepath.Join(e.repo, "snapshots", "*"))
	if err != nil || len(snaps) != 3 {
		t.Fatalf("snapshots %v %v", snaps, err)
	}
	delID := e.snapshotIDAt(t1)
	if err := os.Remove(filepath.Join(e.repo, "snapshots", delID)); err != nil {
		t.Fatal(err)
	}

	doc, code = e.report(cfg, "--to", now.Add(2*time.Hour).Format(time.RFC3339))
	if code != exitError {
		t.Errorf("report: exit %d", code)
	}
	freq = doc.control(t, "backup-frequency")
	if len(freq.Breaches) != 2 || !freq.Breaches[1].Open || !freq.Breaches[1].From.Equal(t3) {
		t.Errorf("breaches %+v: want the 4h30m one and one open from %s", freq.Breaches, t3)
	}
	if c := doc.control(t, "verify-read-data"); c.Status != compliance.Pass || len(c.Evidence) != 1 {
		t.Errorf("verify-read-data: %s %s", c.Status, c.Summary)
	}
	if c := doc.control(t, "copies"); c.Status != compliance.Fail || !strings.Contains(c.Summary, "old at the end of the period") {
		t.Errorf("copies, 2h after the copy with a 1h RPO: %s %s", c.Status, c.Summary)
	}
	if c := doc.control(t, "restore-test"); c.Status != compliance.Fail || !hasFinding(c, "restore at") {
		// The newest restore (of deadbeef) failed.
		t.Errorf("restore-test: %s %s %v", c.Status, c.Summary, c.Findings)
	}
	if c := doc.control(t, "legal-holds"); c.Status != compliance.Pass || !hasFinding(c, "released by") || !hasFinding(c, "case SEC-2026-9") {
		t.Errorf("legal-holds: %s %v", c.Status, c.Findings)
	}
	if c := doc.control(t, "retention-floors"); c.Status != compliance.Fail || !hasFinding(c, delID[:8]+", written by record") {
		t.Errorf("retention-floors after a deletion behind nestguard's back: %s %v", c.Status, c.Findings)
	}
	if c := doc.control(t, "failed-operations"); c.Status != compliance.Fail || !hasFinding(c, "restore deadbeef") {
		t.Errorf("failed-operations: %s %v", c.Status, c.Findings)
	}
	// The report proves every record it cites.
	if doc.Audit == nil || len(doc.Audit.Records) == 0 {
		t.Fatal("the report has no audit evidence")
	}
	cited := map[uint64]bool{}
	for _, c := range doc.Controls {
		for _, p := range c.Evidence {
			cited[p] = true
		}
	}
	if len(cited) != len(doc.Audit.Records) {
		t.Errorf("%d records cited, %d proved", len(cited), len(doc.Audit.Records))
	}
	pub := filepath.Join(e.dir, "audit.pub")
	writeFile(t, pub, e.must("audit", "key"), 0o644)
	report := filepath.Join(e.dir, "report.json")
	auditor := e.noPassphrase()
	if r := auditor.run("audit", "verify", "--key", pub, "--proof", report); r.code != 0 || !strings.Contains(r.stdout, "proved included") {
		t.Fatalf("audit verify --proof: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	b, _ := os.ReadFile(report)
	leaf := doc.Audit.Records[0].Proof.LeafHash
	forged := strings.Replace(string(b), leaf, strings.Repeat("0", len(leaf)), 1)
	writeFile(t, report, forged, 0o644)
	if r := auditor.run("audit", "verify", "--key", pub, "--proof", report); r.code != exitError || !strings.Contains(r.stdout, "is not in the checkpoint") {
		t.Errorf("audit verify --proof of an altered proof: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The repository rolled back past the report (its newest audit entry
	// deleted): the report's checkpoint is ahead of the log.
	writeFile(t, report, string(b), 0o644)
	entries, _ := filepath.Glob(filepath.Join(e.repo, "audit", "*-*"))
	slices.Sort(entries)
	if len(entries) == 0 {
		t.Fatal("no audit entries")
	}
	os.Chmod(entries[len(entries)-1], 0o644)
	if err := os.Remove(entries[len(entries)-1]); err != nil {
		t.Fatal(err)
	}
	if r := auditor.run("audit", "verify", "--key", pub, "--proof", report); r.code != exitError || !strings.Contains(r.stdout, "ahead of the log") {
		t.Errorf("audit verify --proof after a rollback: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// snapshotIDAt returns the id of the snapshot taken at ts.
func (e *env) snapshotIDAt(ts time.Time) string {
	e.t.Helper()
	var list []struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}
	out := e.must("snapshots", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		e.t.Fatalf("snapshots --json: %v\n%s", err, out)
	}
	for _, s := range list {
		if s.Time.Equal(ts) {
			return s.ID
		}
	}
	e.t.Fatalf("no snapshot at %s: %s", ts, out)
	return ""
}

// TestComplianceReportTamperedLog: a report on an audit log with an entry
// deleted (one pass, verified and read) says what 'audit verify' says,
// problem for problem, fails the audit trail, proves nothing, and still
// reports on the records that are left.
func TestComplianceReportTamperedLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	writeFile(t, filepath.Join(src, "a"), "one", 0o644)
	e.must("backup", src)
	e.must("backup", src)
	e.must("snapshots")
	cfg := filepath.Join(e.dir, "nestguard.toml")
	writeFile(t, cfg, "", 0o600)
	if doc, _ := e.report(cfg); doc.control(t, "audit-trail").Status != compliance.Pass || doc.Audit == nil {
		t.Fatalf("audit trail of an intact log: %+v", doc.control(t, "audit-trail"))
	}
	entries, _ := filepath.Glob(filepath.Join(e.repo, "audit", "*-*"))
	slices.Sort(entries)
	if len(entries) != 4 {
		t.Fatalf("%d audit entries, want 4 (init, two backups, snapshots)", len(entries))
	}
	os.Chmod(entries[1], 0o644)
	if err := os.Remove(entries[1]); err != nil {
		t.Fatal(err)
	}
	r := e.run("audit", "verify", "--json")
	var verified struct {
		Logs []struct {
			Problems []string `json:"problems"`
		} `json:"logs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &verified); err != nil || r.code != exitError || len(verified.Logs) != 1 || len(verified.Logs[0].Problems) == 0 {
		t.Fatalf("audit verify of a log with an entry deleted: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	doc, code := e.report(cfg)
	c := doc.control(t, "audit-trail")
	if code != exitError || c.Status != compliance.Fail || doc.Audit != nil {
		t.Errorf("report on a log with an entry deleted: exit %d, audit trail %s %q, proofs %v", code, c.Status, c.Summary, doc.Audit != nil)
	}
	var found []string
	for _, f := range c.Findings {
		if p, ok := strings.CutPrefix(f, "audit verify: "); ok {
			found = append(found, p)
		}
	}
	if !slices.Equal(found, verified.Logs[0].Problems) {
		t.Errorf("the report found %q, audit verify %q", found, verified.Logs[0].Problems)
	}
	// The records left are still read: the first and the last are cited.
	if !slices.Equal(c.Evidence, []uint64{0, 3}) {
		t.Errorf("the audit trail cites records %v, want 0 and 3 (record 1 deleted)", c.Evidence)
	}
}

// A report with nothing failed but some controls without evidence exits
// 3; a bad framework or format is a usage error.
func TestComplianceReportNoEvidence(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	cfg := filepath.Join(e.dir, "nestguard.toml")
	writeFile(t, cfg, "", 0o600)
	doc, code := e.report(cfg, "--framework", "gdpr")
	if code != exitPartial || doc.Status != compliance.NoEvidence || doc.Framework != "gdpr" {
		t.Errorf("gdpr report of a new repository: exit %d, status %s", code, doc.Status)
	}
	for _, c := range doc.Controls {
		if c.Status == compliance.Pass && len(c.Evidence) == 0 && c.ID != "encryption" {
			t.Errorf("%s passed without evidence", c.ID)
		}
	}
	for _, args := range [][]string{{"--framework", "hipaa"}, {"--format", "pdf"}, {"--from", "2026-12-02", "--to", "2026-12-01"}, {"--format", "html", "--json"}} {
		if r := e.run(append([]string{"report", "compliance"}, args...)...); r.code != exitUsage {
			t.Errorf("report compliance %v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	// An --output that cannot be written is named before the evaluation.
	for _, out := range []string{filepath.Join(e.dir, "missing", "r.html"), e.dir} {
		if r := e.run("report", "compliance", "--output", out); r.code != exitError || !strings.Contains(r.stderr, "--output") || !strings.Contains(r.stderr, out) {
			t.Errorf("report compliance --output %s: exit %d: %s", out, r.code, r.stderr)
		}
	}
}

// TestComplianceReportHTML: the HTML report of a repository with an RPO
// breach, a read-back, a restore test and a hold is one file with
// nothing external (no script, link, image or URL); headless Chromium
// shows every control with its status styled, loads no resource besides
// the file, and prints it on A4. The screenshot and the PDF are kept as
// test artifacts ($NESTGUARD_TEST_ARTIFACTS).
func TestComplianceReportHTML(t *testing.T) {
	t.Parallel()
	chromiumtest.Require(t)
	e := newEnv(t)
	e.must("init")
	cfg := filepath.Join(e.dir, "nestguard.toml")
	writeFile(t, cfg, "[class.ledger]\nfloor = \"7y\"\nrpo = \"1h\"\nrto = \"1h\"\n", 0o600)
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 8, 5, 10_000)
	now := time.Now().UTC().Truncate(time.Second)
	for _, d := range []time.Duration{5 * time.Hour, 4*time.Hour + 30*time.Minute, 10 * time.Minute} {
		e.backupAt(src, now.Add(-d).Format(time.RFC3339), "--config", cfg, "--class", "ledger")
	}
	e.must("verify", "--read-data")
	e.must("restore", "latest", "--target", filepath.Join(e.dir, "out"))
	e.must("hold", "add", "latest", "--case", "SEC-2026-9", "--reason", "inquiry", "--record-only")
	e.must("hold", "release", "latest", "--case", "SEC-2026-9", "--reason", "closed")

	art := chromiumtest.ArtifactDir(t)
	html := filepath.Join(art, "compliance-report.html")
	r := e.run("--config", cfg, "report", "compliance", "--format", "html", "--output", html, "--to", now.Add(20*time.Minute).Format(time.RFC3339))
	if r.code != exitError {
		t.Fatalf("report --format html: exit %d: %s", r.code, r.stderr)
	}
	b, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, external := range []string{"<script", "<link", "<img", "src=", "http://", "https://", "@import", "url("} {
		if strings.Contains(page, external) {
			t.Errorf("the HTML report holds %q: it must need nothing outside the file", external)
		}
	}
	doc, _ := e.report(cfg, "--to", now.Add(20*time.Minute).Format(time.RFC3339))

	p := chromiumtest.Open(t, html)
	if title := chromiumtest.Eval[string](t, p, "document.title"); !strings.HasPrefix(title, "Compliance report") {
		t.Errorf("title %q", title)
	}
	if n := chromiumtest.Eval[int](t, p, "document.querySelectorAll('div.control').length"); n != len(doc.Controls) {
		t.Errorf("the page shows %d controls, the report has %d", n, len(doc.Controls))
	}
	if n := chromiumtest.Eval[int](t, p, "performance.getEntriesByType('resource').length"); n != 0 {
		t.Errorf("the page loaded %d resources besides itself", n)
	}
	// The inline style is applied: a failed control's badge is red.
	if bg := chromiumtest.Eval[string](t, p, "getComputedStyle(document.querySelector('#backup-frequency .badge')).backgroundColor"); bg != "rgb(180, 35, 24)" {
		t.Errorf("the failed control's badge is %s, not the fail colour", bg)
	}
	if txt := chromiumtest.Eval[string](t, p, "document.querySelector('#backup-frequency').innerText"); !strings.Contains(txt, "4h20m") {
		t.Errorf("the breach's length is not shown:\n%s", txt)
	}
	png := p.Screenshot(t)
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("the screenshot is not a PNG (%d bytes)", len(png))
	}
	chromiumtest.Save(t, art, "compliance-report.png", png)
	chromiumtest.Save(t, art, "compliance-report-first-screen.png", p.ViewportScreenshot(t))
	chromiumtest.Save(t, art, "compliance-report.pdf", p.PDF(t))
}

// TestComplianceReportPG: a real PostgreSQL cluster backed up under a
// class with an RPO and an RTO, then a restore test (pg restore --start:
// the server starts and recovery completes); report compliance passes
// the restore-test control on that pg restore record, cites it with its
// measured duration, lists the cluster as one asset, and 'audit verify
// --proof' accepts the report.
func TestComplianceReportPG(t *testing.T) {
	t.Parallel()
	p := newPITREnv(t, pgtest.Options{})
	cfg := filepath.Join(p.dir, "nestguard.toml")
	writeFile(t, cfg, "[class.ledger]\nfloor = \"7y\"\nrpo = \"1h\"\nrto = \"1h\"\n", 0o644)
	p.c.Exec(t, "CREATE TABLE ledger (id int PRIMARY KEY); INSERT INTO ledger SELECT generate_series(1, 100)")
	b := p.backup(t, p.c, "--config", cfg, "--class", "ledger")
	r := p.restore(t, "--to-latest")
	var rows int64
	if err := connect(t, r.dsn()).QueryRow(context.Background(), "SELECT count(*) FROM ledger").Scan(&rows); err != nil || rows != 100 {
		t.Fatalf("the restored server: %d rows, %v", rows, err)
	}
	stopServer(t, p.c.BinDir, r.dir)

	var log struct {
		Records []struct {
			Position uint64            `json:"position"`
			Command  string            `json:"command"`
			Options  map[string]string `json:"options"`
			Duration time.Duration     `json:"duration_ns"`
		} `json:"records"`
	}
	if out := p.must("audit", "log", "--json"); json.Unmarshal([]byte(out), &log) != nil {
		t.Fatalf("audit log --json:\n%s", out)
	}
	var pos uint64
	var took time.Duration
	for _, rec := range log.Records {
		if rec.Command == "pg restore" {
			pos, took = rec.Position, rec.Duration
		}
	}
	if pos == 0 || took <= 0 {
		t.Fatalf("no pg restore record with a duration in the audit log: %+v", log.Records)
	}

	doc, _ := p.report(cfg)
	c := doc.control(t, "restore-test")
	if c.Status != compliance.Pass || !slices.Equal(c.Evidence, []uint64{pos}) || !strings.Contains(c.Summary, "within the RTO of class ledger (1h)") {
		t.Errorf("restore-test after pg restore --start: %s, evidence %v: %s %v", c.Status, c.Evidence, c.Summary, c.Findings)
	}
	if hasFinding(c, "without --start") {
		t.Errorf("restore-test says the pg restore had no --start: %v", c.Findings)
	}
	if want := fmt.Sprintf("record %d, pg restore of snapshot %s) took ", pos, b.Snapshot[:8]); !strings.Contains(c.Summary, want) {
		t.Errorf("restore-test summary %q: want %q and the measured duration", c.Summary, want)
	}
	if took < time.Minute && !strings.Contains(c.Summary, took.Round(time.Millisecond).String()) {
		t.Errorf("restore-test summary %q does not show the measured %s", c.Summary, took.Round(time.Millisecond))
	}
	var pgAssets []compliance.Asset
	for _, a := range doc.Assets {
		if strings.HasPrefix(a.Name, "postgres cluster ") {
			pgAssets = append(pgAssets, a)
		}
	}
	if len(pgAssets) != 1 || len(doc.Assets) != 1 || pgAssets[0].Class != "ledger" || pgAssets[0].Snapshots != 1 || pgAssets[0].RPOSeconds != 3600 {
		t.Errorf("assets %+v: want the cluster once, class ledger, one snapshot", doc.Assets)
	}

	pub := filepath.Join(p.dir, "audit.pub")
	writeFile(t, pub, p.must("audit", "key"), 0o644)
	auditor := p.noPassphrase()
	if r := auditor.run("audit", "verify", "--key", pub, "--proof", filepath.Join(p.dir, "report.json")); r.code != 0 || !strings.Contains(r.stdout, "proved included") {
		t.Fatalf("audit verify --proof: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestComplianceReportOutputQuiet: with --output, the report's file and
// status are named on stderr in every format, and -q silences that line
// (it used to be printed for text only with -q).
func TestComplianceReportOutputQuiet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	out := filepath.Join(e.dir, "r.txt")
	for _, format := range []string{"text", "json", "html"} {
		r := e.run("report", "compliance", "--format", format, "--output", out)
		if !strings.Contains(r.stderr, "report written to "+out) {
			t.Errorf("--format %s --output: stderr %q", format, r.stderr)
		}
		r = e.run("-q", "report", "compliance", "--format", format, "--output", out)
		if strings.Contains(r.stderr, "report written") {
			t.Errorf("-q --format %s --output: stderr %q", format, r.stderr)
		}
	}
}
