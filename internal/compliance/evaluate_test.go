package compliance

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/audit"
	"github.com/nestguard/nestguard/internal/class"
	"github.com/nestguard/nestguard/internal/hold"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/policy"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
)

var t0 = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

func sid(n int) id.ID { return id.Hash([]byte(fmt.Sprint("snapshot", n))) }

// world builds synthetic evidence: a repository made at t0 whose ledger
// class has a 7y floor, a 1h RPO and a 4h RTO.
type world struct{ ev *Evidence }

func newWorld() *world {
	ev := &Evidence{
		To:         t0.Add(24 * time.Hour),
		Repository: "/srv/backup",
		Config:     repository.Config{ID: "repo1", Created: t0, Algorithms: repository.Algorithms{Encryption: "XAES-256-GCM", KDF: "argon2id"}},
		Classes: class.Set{
			"ledger": {Name: "ledger", Floor: policy.Duration{Years: 7}, RPO: time.Hour, RTO: 4 * time.Hour},
			"tmp":    {Name: "tmp"},
		},
		Keys: []repository.KeyInfo{{ID: "k1", Created: t0, Username: "alice", Hostname: "h"}},
	}
	w := &world{ev}
	w.record(t0, "init", audit.Success)
	return w
}

// record appends an audit record and returns it.
func (w *world) record(at time.Time, cmd, outcome string, wrote ...string) *Record {
	l := &w.ev.Log
	r := Record{Position: uint64(len(l.Records)), Record: &audit.Record{Time: at, User: "alice", Host: "h", Command: cmd,
		Outcome: outcome, Repository: "/srv/backup", Options: map[string]string{}, Wrote: wrote}}
	l.Records = append(l.Records, r)
	l.Checkpoint = &audit.Checkpoint{Size: uint64(len(l.Records))}
	return &l.Records[len(l.Records)-1]
}

// backup records a backup of /srv/ledger of class cl at, with its
// snapshot n (kept unless removed is set).
func (w *world) backup(n int, at time.Time, cl string, kept bool) {
	r := w.record(at, "backup", audit.Success, "snapshots/"+sid(n).String())
	r.Args = []string{"/srv/ledger"}
	r.Options["class"] = cl
	if kept {
		sn := &snapshot.Snapshot{ID: sid(n), Time: at, Kind: snapshot.KindFiles, Paths: []string{"/srv/ledger"}, Hostname: "h", Class: cl}
		if c := w.ev.Classes[cl]; c != nil {
			sn.KeepUntil = c.KeepUntil(at)
		}
		w.ev.Snapshots = append(w.ev.Snapshots, sn)
	}
}

func (w *world) forget(at time.Time, ns ...int) {
	var wrote []string
	for _, n := range ns {
		wrote = append(wrote, "-snapshots/"+sid(n).String())
	}
	w.record(at, "forget", audit.Success, wrote...)
}

func control(t *testing.T, rep *Report, cid string) *Control {
	t.Helper()
	for i := range rep.Controls {
		if rep.Controls[i].ID == cid {
			return &rep.Controls[i]
		}
	}
	t.Fatalf("no control %s", cid)
	return nil
}

func TestControls(t *testing.T) {
	h := time.Hour
	for _, tc := range []struct {
		name    string
		control string
		build   func(w *world)
		status  string
		finding string // a finding that must be there
	}{
		{"rpo held", "backup-frequency", func(w *world) {
			for i := range 24 {
				w.backup(i, t0.Add(time.Duration(i)*h+30*time.Minute), "ledger", true)
			}
		}, Pass, ""},
		{"rpo gap and open gap", "backup-frequency", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			w.backup(2, t0.Add(4*h), "ledger", true) // 3h gap
			w.ev.To = t0.Add(6 * h)                  // 2h since the last
		}, Fail, "3h without a backup"},
		{"rpo: a forgotten backup still counts", "backup-frequency", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			w.backup(2, t0.Add(h+50*time.Minute), "ledger", false)
			w.backup(3, t0.Add(2*h+40*time.Minute), "ledger", true)
			w.forget(t0.Add(3*h), 2)
			w.ev.To = t0.Add(3 * h)
		}, Pass, ""},
		{"rpo: gap before the period counts from the last backup before it", "backup-frequency", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			w.backup(2, t0.Add(5*h), "ledger", true)
			w.ev.From, w.ev.To = t0.Add(3*h), t0.Add(5*h+30*time.Minute)
		}, Fail, "4h without a backup"},
		{"rpo: no class with an RPO", "backup-frequency", func(w *world) {
			w.backup(1, t0.Add(h), "tmp", true)
		}, NoEvidence, ""},
		{"floor: removed early", "retention-floors", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", false)
			w.forget(t0.Add(2*h), 1)
		}, Fail, "before its floor ended"},
		{"floor: a snapshot without a floor removed", "retention-floors", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			w.backup(2, t0.Add(h), "tmp", false)
			w.forget(t0.Add(2*h), 2)
		}, Pass, ""},
		{"floor: deleted outside nestguard", "retention-floors", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			w.backup(2, t0.Add(2*h), "ledger", false)
		}, Fail, "no record removed it"},
		{"floor: no floored class", "retention-floors", func(w *world) {
			w.ev.Classes = class.Set{}
		}, NoEvidence, ""},
		{"verify: none", "verify-read-data", func(w *world) {
			w.record(t0.Add(h), "verify", audit.Success) // without --read-data
		}, NoEvidence, ""},
		{"verify: passed", "verify-read-data", func(w *world) {
			w.record(t0.Add(h), "verify", audit.Failed).Options["read-data"] = "100%"
			w.record(t0.Add(2*h), "verify", audit.Success).Options["read-data"] = "100%"
		}, Pass, ""},
		{"verify: the newest failed", "verify-read-data", func(w *world) {
			r := w.record(t0.Add(h), "verify", audit.Failed)
			r.Options["read-data"], r.Message = "5%", "pack 1234 damaged"
		}, Fail, "pack 1234 damaged"},
		{"restore: within the RTO", "restore-test", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			r := w.record(t0.Add(2*h), "restore", audit.Success)
			r.Args, r.Duration = []string{sid(1).String()[:8]}, 3*h
		}, Pass, ""},
		{"restore: over the RTO", "restore-test", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			r := w.record(t0.Add(2*h), "restore", audit.Success)
			r.Args, r.Duration = []string{"latest"}, 5*h
		}, Fail, ""},
		{"restore: none", "restore-test", func(w *world) {}, NoEvidence, ""},
		{"copies: recent", "copies", func(w *world) {
			r := w.record(t0.Add(23*h), "copy", audit.Success)
			r.Options["from-repo"], r.Options["to-repo"] = "/srv/backup", "s3://dr/x"
		}, Pass, "copy to s3://dr/x"},
		{"copies: too old", "copies", func(w *world) {
			r := w.record(t0.Add(h), "copy", audit.Success)
			r.Options["from-repo"], r.Options["to-repo"] = "/srv/backup", "s3://dr/x"
		}, Fail, ""},
		{"copies: only into this repository", "copies", func(w *world) {
			r := w.record(t0.Add(23*h), "copy", audit.Success)
			r.Options["from-repo"], r.Options["to-repo"] = "/srv/other", "/srv/backup"
		}, NoEvidence, "into this repository"},
		{"failed operations", "failed-operations", func(w *world) {
			r := w.record(t0.Add(h), "forget", audit.Failed)
			r.Message = "snapshot 1234 is retained"
			b := w.record(t0.Add(2*h), "pg archive-wal", audit.Partial)
			b.Batch = []audit.BatchItem{{Time: t0.Add(h), Arg: "000000010000000000000001", Outcome: audit.Success},
				{Time: t0.Add(2 * h), Arg: "000000010000000000000002", Outcome: audit.Failed, Message: "disk full"}}
		}, Fail, "disk full"},
		{"failed operations: a forget started, no outcome", "failed-operations", func(w *world) {
			r := w.record(t0.Add(h), "forget", audit.Started)
			r.Intent = []string{"-snapshots/" + sid(1).String()}
		}, Fail, "recorded no outcome"},
		{"failed operations: a forget started and finished", "failed-operations", func(w *world) {
			r := w.record(t0.Add(h), "forget", audit.Started)
			r.Intent = []string{"-snapshots/" + sid(1).String()}
			pos := r.Position
			w.record(t0.Add(h), "forget", audit.Success, r.Intent...).IntentRecord = &pos
		}, Pass, ""},
		{"holds: none", "legal-holds", func(w *world) {}, NotApplicable, ""},
		{"holds: recorded", "legal-holds", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			add := &hold.Record{ID: id.Hash([]byte("h1")), Snapshot: sid(1), Case: "SEC-1", Reason: "inquiry", User: "bob", Host: "h", Time: t0.Add(2 * h), Action: hold.ActionAdd}
			rel := &hold.Record{ID: id.Hash([]byte("h2")), Snapshot: sid(1), Case: "SEC-1", Reason: "closed", User: "carol", Host: "h", Time: t0.Add(3 * h), Action: hold.ActionRelease}
			w.ev.Holds = []*hold.Record{add, rel}
			w.record(add.Time, "hold add", audit.Success, "holds/"+add.ID.String())
			w.record(rel.Time, "hold release", audit.Success, "holds/"+rel.ID.String())
		}, Pass, "released by carol@h"},
		{"holds: a hold object no record wrote", "legal-holds", func(w *world) {
			w.ev.Holds = []*hold.Record{{ID: id.Hash([]byte("h1")), Snapshot: sid(1), Case: "C", Reason: "r", Time: t0.Add(h), Action: hold.ActionAdd}}
		}, Fail, "NO AUDIT RECORD"},
		{"holds: recorded as enforced, not held by the storage", "legal-holds", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			add := &hold.Record{ID: id.Hash([]byte("h1")), Snapshot: sid(1), Case: "SEC-2", Reason: "inquiry", User: "bob", Host: "h", Time: t0.Add(2 * h), Action: hold.ActionAdd, Enforced: true}
			w.ev.Holds = []*hold.Record{add}
			w.record(add.Time, "hold add", audit.Success, "holds/"+add.ID.String())
			w.ev.HoldsCheck = []hold.Partial{{Record: add, Objects: 7, Unheld: 7}}
		}, Fail, "NOT HELD by the storage: 7 of its 7"},
		{"holds: the storage cannot confirm them", "legal-holds", func(w *world) {
			w.backup(1, t0.Add(h), "ledger", true)
			add := &hold.Record{ID: id.Hash([]byte("h1")), Snapshot: sid(1), Case: "SEC-3", Reason: "inquiry", User: "bob", Host: "h", Time: t0.Add(2 * h), Action: hold.ActionAdd, Enforced: true}
			w.ev.Holds = []*hold.Record{add}
			w.record(add.Time, "hold add", audit.Success, "holds/"+add.ID.String())
			w.ev.HoldsCheckErr = errors.New("reading snapshot 00000001 of hold \"SEC-3\": no such file")
		}, Fail, "could not confirm the legal holds"},
		{"object lock: none", "object-lock", func(w *world) {}, Fail, ""},
		{"object lock: governance", "object-lock", func(w *world) {
			w.ev.Config.ObjectLock = &repository.ObjectLock{Mode: "governance", MinRetention: 8 * 366 * 24 * time.Hour}
		}, Fail, "compliance mode"},
		{"object lock: compliance, shorter than a floor", "object-lock", func(w *world) {
			w.ev.Config.ObjectLock = &repository.ObjectLock{Mode: "compliance", MinRetention: 365 * 24 * time.Hour}
		}, Fail, "class ledger keeps"},
		{"object lock: compliance", "object-lock", func(w *world) {
			w.ev.Config.ObjectLock = &repository.ObjectLock{Mode: "compliance", MinRetention: 8 * 366 * 24 * time.Hour}
			on := true
			w.ev.LockEnforced = &on
		}, Pass, ""},
		{"key age", "key-age", func(w *world) {
			w.ev.To = t0.Add(400 * 24 * h)
		}, Fail, "older than 365d"},
		{"audit trail: problems", "audit-trail", func(w *world) {
			w.ev.Log.Problems = []string{"records 3 to 4 are missing"}
		}, Fail, "missing"},
		{"audit trail: verifies", "audit-trail", func(w *world) {}, Pass, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			tc.build(w)
			rep, err := Evaluate(w.ev, All, t0)
			if err != nil {
				t.Fatal(err)
			}
			c := control(t, rep, tc.control)
			if c.Status != tc.status {
				t.Errorf("status %s, want %s: %s\n%s", c.Status, tc.status, c.Summary, strings.Join(c.Findings, "\n"))
			}
			if tc.finding != "" && !slices.ContainsFunc(c.Findings, func(f string) bool { return strings.Contains(f, tc.finding) }) &&
				!strings.Contains(c.Summary, tc.finding) {
				t.Errorf("no finding %q: %s\n%s", tc.finding, c.Summary, strings.Join(c.Findings, "\n"))
			}
			if c.Status != NoEvidence && c.Status != NotApplicable && len(c.Evidence) == 0 && tc.control != "object-lock" && tc.control != "legal-holds" {
				t.Errorf("status %s without evidence", c.Status)
			}
		})
	}
}

// Breaches are listed with their lengths; an open one runs to the end.
func TestBreaches(t *testing.T) {
	w := newWorld()
	w.backup(1, t0.Add(time.Hour), "ledger", true)
	w.backup(2, t0.Add(4*time.Hour), "ledger", true)
	w.ev.To = t0.Add(6 * time.Hour)
	rep, err := Evaluate(w.ev, All, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := control(t, rep, "backup-frequency")
	want := []Breach{
		{Asset: "h:/srv/ledger", Class: "ledger", From: t0.Add(time.Hour), To: t0.Add(4 * time.Hour), LengthSeconds: 3 * 3600, RPOSeconds: 3600},
		{Asset: "h:/srv/ledger", Class: "ledger", From: t0.Add(4 * time.Hour), To: t0.Add(6 * time.Hour), LengthSeconds: 2 * 3600, RPOSeconds: 3600, Open: true},
	}
	if !slices.Equal(c.Breaches, want) {
		t.Errorf("breaches %+v, want %+v", c.Breaches, want)
	}
	if len(rep.Assets) != 1 || rep.Assets[0].Breaches != 2 || rep.Assets[0].Snapshots != 2 {
		t.Errorf("assets %+v", rep.Assets)
	}
}

// A framework keeps only the controls that serve it, with only its
// clauses; the overall status is the worst.
func TestFramework(t *testing.T) {
	w := newWorld()
	rep, err := Evaluate(w.ev, PCIDSS, t0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range rep.Controls {
		ids = append(ids, c.ID)
		for _, cl := range c.Clauses {
			if cl.Framework != PCIDSS {
				t.Errorf("%s: clause %s in a PCI DSS report", c.ID, cl.Label())
			}
		}
	}
	if slices.Contains(ids, "legal-holds") || !slices.Contains(ids, "encryption") {
		t.Errorf("PCI DSS controls %v", ids)
	}
	if rep.Status != Fail || rep.Counts[Fail] == 0 {
		t.Errorf("status %s, counts %v", rep.Status, rep.Counts)
	}
	if _, err := ParseFramework("hipaa"); err == nil {
		t.Error("ParseFramework accepted hipaa")
	}
	w.ev.From = w.ev.To
	if _, err := Evaluate(w.ev, All, t0); err == nil {
		t.Error("an empty period was accepted")
	}
}

// A reader of a long log keeps the records of the period and those that
// wrote or removed something (and init): Needs.
func TestNeeds(t *testing.T) {
	ev := &Evidence{From: t0.Add(time.Hour), To: t0.Add(2 * time.Hour)}
	for _, tc := range []struct {
		r    audit.Record
		want bool
	}{
		{audit.Record{Time: t0, Command: "verify"}, false},
		{audit.Record{Time: t0.Add(3 * time.Hour), Command: "verify"}, false},
		{audit.Record{Time: t0.Add(90 * time.Minute), Command: "verify"}, true},
		{audit.Record{Time: t0, Command: "init"}, true},
		{audit.Record{Time: t0, Command: "backup", Wrote: []string{"snapshots/ab"}}, true},
		{audit.Record{Time: t0.Add(3 * time.Hour), Command: "forget", Wrote: []string{"-snapshots/ab"}}, true},
	} {
		if got := ev.Needs(&tc.r); got != tc.want {
			t.Errorf("Needs(%s at %s) = %v", tc.r.Command, tc.r.Time, got)
		}
	}
}

// A PostgreSQL cluster is one asset (by system identifier) whatever its
// data directory; pg restore --start is measured against its class's RTO,
// and one without --start says that recovery is not in its time.
func TestPostgresAssetAndRestore(t *testing.T) {
	w := newWorld()
	for i, at := range []time.Duration{time.Hour, 90 * time.Minute} {
		r := w.record(t0.Add(at), "pg backup", audit.Success, "snapshots/"+sid(10+i).String())
		r.Options["class"] = "ledger"
		w.ev.Snapshots = append(w.ev.Snapshots, &snapshot.Snapshot{ID: sid(10 + i), Time: t0.Add(at), Kind: snapshot.KindPostgres,
			Hostname: "db1", Class: "ledger", Extra: []byte(`{"system_identifier":"7311212121212121212"}`)})
	}
	r := w.record(t0.Add(2*time.Hour), "pg restore", audit.Success)
	r.Options["start"], r.Duration = "true", 5*time.Hour
	w.ev.To = t0.Add(150 * time.Minute)
	rep, err := Evaluate(w.ev, All, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Assets) != 1 || rep.Assets[0].Name != "postgres cluster 7311212121212121212 (host db1)" || rep.Assets[0].Snapshots != 2 {
		t.Errorf("assets %+v", rep.Assets)
	}
	if c := control(t, rep, "restore-test"); c.Status != Fail || !strings.Contains(c.Summary, "more than the RTO of class ledger") {
		t.Errorf("pg restore --start over the RTO: %s: %s", c.Status, c.Summary)
	}
	r.Options["start"], r.Duration = "false", time.Minute
	rep, _ = Evaluate(w.ev, All, t0)
	if c := control(t, rep, "restore-test"); c.Status != Pass || !hasFinding(c, "without --start") {
		t.Errorf("pg restore without --start: %s %v", c.Status, c.Findings)
	}
}

func hasFinding(c *Control, s string) bool {
	return slices.ContainsFunc(c.Findings, func(f string) bool { return strings.Contains(f, s) })
}

// A class with an RPO that was never backed up has no evidence: the
// control does not pass because another class kept its RPO.
func TestBackupFrequencyClassNeverBackedUp(t *testing.T) {
	w := newWorld()
	w.ev.Classes["logs"] = &class.Class{Name: "logs", RPO: 24 * time.Hour}
	for i := range 6 {
		w.backup(i, t0.Add(time.Duration(i)*30*time.Minute), "ledger", true)
	}
	w.ev.To = t0.Add(3 * time.Hour)
	rep, err := Evaluate(w.ev, All, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := control(t, rep, "backup-frequency")
	if c.Status != NoEvidence || !slices.ContainsFunc(c.Findings, func(f string) bool { return strings.Contains(f, "class logs") }) || !strings.Contains(c.Summary, "logs") {
		t.Errorf("backup-frequency with class logs never backed up: %s %q %q", c.Status, c.Summary, c.Findings)
	}
}

// key-age and encryption over a period that ended before the repository
// was made have nothing to judge: no key or data existed then. A key slot added after the
// period is not counted in it (its age there would be negative).
func TestKeyAgeBeforeRepository(t *testing.T) {
	w := newWorld()
	w.ev.To = t0.Add(-24 * time.Hour)
	rep, err := Evaluate(w.ev, All, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"key-age", "encryption"} {
		if c := control(t, rep, id); c.Status != NoEvidence {
			t.Errorf("%s of a period before the repository: %s %q %q", id, c.Status, c.Summary, c.Findings)
		}
	}
	w = newWorld()
	w.ev.To = t0.Add(400 * 24 * time.Hour)
	w.ev.Keys = append(w.ev.Keys, repository.KeyInfo{ID: "k2", Created: t0.Add(500 * 24 * time.Hour), Username: "bob", Hostname: "h"})
	rep, err = Evaluate(w.ev, All, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := control(t, rep, "key-age")
	if c.Status != Fail || c.Summary != "2 keys older than 365d" || !slices.ContainsFunc(c.Findings, func(f string) bool { return strings.Contains(f, "after the end of the period") }) {
		t.Errorf("key-age with a slot added after the period: %s %q %q", c.Status, c.Summary, c.Findings)
	}
}
