package compliance

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/audit"
	"github.com/nestguard/nestguard/internal/hold"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// Report is an evaluated compliance report.
type Report struct {
	Framework  string    `json:"framework"`
	From       time.Time `json:"from,omitzero"`
	To         time.Time `json:"to"`
	Generated  time.Time `json:"generated"`
	Repository string    `json:"repository"`
	// RepositoryID is the repository's id, which is also its audit
	// log's id.
	RepositoryID string `json:"repository_id"`
	// Status is fail if any control failed, else no evidence if any
	// control has none, else pass.
	Status   string         `json:"status"`
	Counts   map[string]int `json:"counts"`
	Controls []Control      `json:"controls"`
	Assets   []Asset        `json:"assets"`
	// Audit is the evidence section: the checkpoint and the proofs of
	// the records the controls cite (set by Prove).
	Audit *AuditEvidence `json:"audit"`
}

// Asset is one thing backed up under one data class: a host's paths or a
// PostgreSQL cluster.
type Asset struct {
	Name      string    `json:"name"`
	Class     string    `json:"class,omitempty"`
	Snapshots int       `json:"snapshots"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
	// RPOSeconds is the class's RPO (0: none).
	RPOSeconds float64 `json:"rpo_seconds,omitempty"`
	// Breaches counts its RPO breaches in the period.
	Breaches int `json:"breaches"`
}

// Breach is a gap between backups of an asset longer than its class's
// RPO: from a backup to the next, or to the end of the period when none
// followed (Open).
type Breach struct {
	Asset         string    `json:"asset"`
	Class         string    `json:"class"`
	From          time.Time `json:"from"`
	To            time.Time `json:"to"`
	LengthSeconds float64   `json:"length_seconds"`
	RPOSeconds    float64   `json:"rpo_seconds"`
	Open          bool      `json:"open"`
}

// Evaluate checks every control of framework f (All: every control)
// against ev.
func Evaluate(ev *Evidence, f string, now time.Time) (*Report, error) {
	if f != All && !slices.Contains(Frameworks, f) {
		return nil, fmt.Errorf("unknown framework %q", f)
	}
	if ev.To.IsZero() {
		return nil, fmt.Errorf("compliance: the period has no end")
	}
	if !ev.From.IsZero() && !ev.From.Before(ev.To) {
		return nil, fmt.Errorf("the period's start %s is not before its end %s", fmtTime(ev.From), fmtTime(ev.To))
	}
	rep := &Report{Framework: f, From: ev.From, To: ev.To, Generated: now.UTC(), Repository: ev.Repository,
		RepositoryID: ev.Config.ID, Counts: map[string]int{Pass: 0, Fail: 0, NoEvidence: 0, NotApplicable: 0}}
	freq, assets := ev.backupFrequency()
	rep.Assets = assets
	for _, c := range []*Control{
		freq,
		ev.retentionFloors(),
		ev.objectLock(),
		ev.legalHolds(),
		ev.encryption(),
		ev.copies(),
		ev.verifyReadData(),
		ev.restoreTest(),
		ev.keyAge(),
		ev.failedOperations(),
		ev.auditTrail(),
	} {
		if !c.serves(f) {
			continue
		}
		c.only(f)
		c.finish()
		rep.Controls = append(rep.Controls, *c)
		rep.Counts[c.Status]++
	}
	switch {
	case rep.Counts[Fail] > 0:
		rep.Status = Fail
	case rep.Counts[NoEvidence] > 0:
		rep.Status = NoEvidence
	default:
		rep.Status = Pass
	}
	return rep, nil
}

// backupFrequency is the RPO control: for every asset of a class with an
// RPO, every gap between two backups (and from the last to the end of the
// period) longer than the RPO. Backups whose snapshots forget removed
// since count: the log says when they ran.
func (ev *Evidence) backupFrequency() (*Control, []Asset) {
	c := &Control{ID: "backup-frequency", Title: "Backups ran as often as each data class's RPO requires",
		Clauses: []Clause{soxITGC, pci1210, gdpr32, isoBackup, isoReadiness}}
	type series struct {
		key   assetKey
		times []time.Time
		pos   []uint64
		snaps int
	}
	byKey := make(map[assetKey]*series)
	get := func(k assetKey) *series {
		s := byKey[k]
		if s == nil {
			s = &series{key: k}
			byKey[k] = s
		}
		return s
	}
	hist := ev.snapshotHistory()
	// What each writer (command line) backs up, learned from the
	// snapshots it wrote that still exist.
	writers := make(map[string]assetKey)
	current := make(map[string]bool)
	for _, sn := range ev.Snapshots {
		sid := sn.ID.String()
		current[sid] = true
		if sn.CopiedFrom != "" {
			continue // a copy is not a backup of this repository's
		}
		k := assetOf(sn)
		s := get(k)
		s.times = append(s.times, sn.Time)
		s.snaps++
		if w := hist[sid]; w != nil && w.by != nil {
			s.pos = append(s.pos, w.by.Position)
			writers[writerKey(w.by)] = k
		}
	}
	for sid, w := range hist {
		if current[sid] || w.by == nil || (w.by.Command != cmdBackup && w.by.Command != cmdPGBackup) {
			continue
		}
		k, ok := writers[writerKey(w.by)]
		if !ok {
			k = assetKey{fmt.Sprintf("%s %s on %s (removed since)", w.by.Command, strings.Join(w.by.Args, " "), w.by.Host), w.by.Options["class"]}
		}
		s := get(k)
		s.times = append(s.times, writerTime(w.by))
		s.pos = append(s.pos, w.by.Position)
	}
	keys := make([]assetKey, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b assetKey) int {
		return strings.Compare(a.name+"\x00"+a.class, b.name+"\x00"+b.class)
	})
	var assets []Asset
	withRPO := 0
	covered := make(map[string]bool) // classes with an asset backed up in the period
	for _, k := range keys {
		s := byKey[k]
		slices.SortFunc(s.times, time.Time.Compare)
		a := Asset{Name: k.name, Class: k.class, Snapshots: s.snaps, First: s.times[0], Last: s.times[len(s.times)-1]}
		cl := ev.Classes[k.class]
		if k.class == "" || cl == nil || cl.RPO == 0 {
			assets = append(assets, a)
			continue
		}
		rpo := cl.RPO
		a.RPOSeconds = rpo.Seconds()
		// The backups up to the end of the period, from the last one
		// before its start.
		var ts []time.Time
		for _, t := range s.times {
			if !t.Before(ev.To) {
				break
			}
			if !ev.From.IsZero() && t.Before(ev.From) {
				ts = ts[:0]
			}
			ts = append(ts, t)
		}
		if len(ts) == 0 {
			assets = append(assets, a)
			continue // backed up only after the period
		}
		withRPO++
		covered[k.class] = true
		c.cite(s.pos...)
		for i := range ts {
			from, to, open := ts[i], ev.To, i == len(ts)-1
			if !open {
				to = ts[i+1]
			}
			if to.Sub(from) > rpo {
				b := Breach{Asset: k.name, Class: k.class, From: from, To: to, LengthSeconds: to.Sub(from).Seconds(), RPOSeconds: rpo.Seconds(), Open: open}
				c.Breaches = append(c.Breaches, b)
				a.Breaches++
				if open {
					c.find("%s (class %s, RPO %s): no backup since %s, %s before the end of the period", k.name, k.class, fmtDur(rpo), fmtTime(from), fmtDur(to.Sub(from)))
				} else {
					c.find("%s (class %s, RPO %s): %s without a backup, from %s to %s", k.name, k.class, fmtDur(rpo), fmtDur(to.Sub(from)), fmtTime(from), fmtTime(to))
				}
			}
		}
		assets = append(assets, a)
	}
	var uncovered []string
	for _, name := range ev.Classes.Names() {
		cl := ev.Classes[name]
		if cl.RPO == 0 || covered[name] {
			continue
		}
		uncovered = append(uncovered, name)
		found := false
		for _, k := range keys {
			found = found || k.class == name
		}
		if found {
			c.find("class %s (RPO %s): no backup of it before the end of the period", name, fmtDur(cl.RPO))
		} else {
			c.find("class %s (RPO %s): no backup of it at all", name, fmtDur(cl.RPO))
		}
	}
	switch {
	case len(c.Breaches) > 0:
		c.Status = Fail
		c.Summary = plural(len(c.Breaches), "RPO breach", "RPO breaches")
	case withRPO == 0:
		c.Status = NoEvidence
		c.Summary = "no asset of a data class with an RPO was backed up before the end of the period (set rpo in [class.NAME] and back up with --class)"
	case len(uncovered) > 0:
		// A class kept its RPO; nothing shows that the others did.
		c.Status = NoEvidence
		c.Summary = fmt.Sprintf("no backup of class %s before the end of the period, so nothing shows its RPO was kept; %d assets of other classes within theirs", strings.Join(uncovered, ", "), withRPO)
	default:
		c.Status = Pass
		c.Summary = fmt.Sprintf("%d assets of classes with an RPO: every gap between backups within it", withRPO)
	}
	return c, assets
}

// retentionFloors checks that no snapshot of a class with a floor was
// removed before its floor ended, and that no snapshot the log saw
// written disappeared without a recorded removal.
func (ev *Evidence) retentionFloors() *Control {
	c := &Control{ID: "retention-floors", Title: "Retention floors held: no snapshot removed early or outside nestguard",
		Clauses: []Clause{soxITGC, pci94, gdpr51e, gdpr17, finra4511, sec17a4f, isoBackup}}
	var floored []string
	for _, name := range ev.Classes.Names() {
		if !ev.Classes[name].Floor.Zero() {
			floored = append(floored, name)
		}
	}
	current := make(map[string]bool)
	for _, sn := range ev.Snapshots {
		current[sn.ID.String()] = true
	}
	for _, u := range ev.Unreadable {
		current[u.String()] = true
	}
	hist := ev.snapshotHistory()
	ids := make([]string, 0, len(hist))
	for sid := range hist {
		ids = append(ids, sid)
	}
	slices.Sort(ids)
	early, unrecorded, checked := 0, 0, 0
	for _, sid := range ids {
		w := hist[sid]
		switch {
		case w.removed != nil:
			if !ev.inWindow(w.removed.Time) {
				continue
			}
			c.cite(w.removed.Position)
			if w.by == nil {
				c.find("snapshot %s was removed by record %d (%s at %s): the log does not say which class it had", short(sid), w.removed.Position, w.removed.Command, fmtTime(w.removed.Time))
				continue
			}
			c.cite(w.by.Position)
			cl := ev.Classes[w.by.Options["class"]]
			if cl == nil || cl.Floor.Zero() {
				continue
			}
			checked++
			taken := writerTime(w.by)
			if until := cl.KeepUntil(taken); w.removed.Time.Before(until) {
				early++
				c.find("snapshot %s of class %s, taken %s (record %d), was removed at %s (record %d), before its floor ended at %s", short(sid), cl.Name, fmtTime(taken), w.by.Position, fmtTime(w.removed.Time), w.removed.Position, fmtTime(until))
			}
		case w.by != nil && !current[sid] && !w.by.Time.After(ev.To):
			unrecorded++
			c.cite(w.by.Position)
			c.find("snapshot %s, written by record %d (%s at %s), is gone and no record removed it: deleted outside nestguard", short(sid), w.by.Position, w.by.Command, fmtTime(w.by.Time))
		}
	}
	if n := len(ev.Unreadable); n > 0 {
		c.find("%d snapshot objects cannot be read (run 'nestguard verify'): their class and floor are not known", n)
	}
	kept := 0
	for _, sn := range ev.Snapshots {
		cl := ev.Classes[sn.Class]
		if cl == nil || cl.Floor.Zero() || !sn.Time.Before(ev.To) {
			continue
		}
		kept++
		if w := hist[sn.ID.String()]; w != nil && w.by != nil {
			c.cite(w.by.Position)
		}
		if want := cl.KeepUntil(sn.Time); sn.KeepUntil.Before(want) {
			c.find("snapshot %s of class %s records a floor until %s, shorter than the class's floor now (%s): forget keeps it to the later", sn.ID.Short(), cl.Name, fmtTime(sn.KeepUntil), fmtTime(want))
		}
	}
	switch {
	case early > 0 || unrecorded > 0:
		c.Status = Fail
		c.Summary = fmt.Sprintf("%d snapshots removed before their floor ended, %d removed outside nestguard", early, unrecorded)
	case len(floored) == 0:
		c.Status = NoEvidence
		c.Summary = "no data class defines a floor (set floor in [class.NAME])"
	case kept == 0 && checked == 0:
		c.Status = NoEvidence
		c.Summary = fmt.Sprintf("no snapshot of the floored classes (%s) exists or was removed in the period", strings.Join(floored, ", "))
	default:
		c.Status = Pass
		c.Summary = fmt.Sprintf("%d snapshots of floored classes kept, %d removed after their floor ended, none removed outside nestguard", kept, checked)
	}
	return c
}

// objectLock checks the WORM protection: Object Lock in compliance mode,
// enforced by the storage, with a minimum retention no shorter than any
// class's floor.
func (ev *Evidence) objectLock() *Control {
	c := &Control{ID: "object-lock", Title: "Backups are stored write-once (Object Lock, compliance mode)",
		Clauses: []Clause{soxITGC, pci105, finra4511, sec17a4f, isoBackup}}
	for _, r := range ev.Log.Records {
		if r.Command == cmdInit {
			c.cite(r.Position)
		}
	}
	ol := ev.Config.ObjectLock
	if ol == nil {
		c.Status = Fail
		c.Summary = "the repository has no Object Lock policy: its objects can be deleted or overwritten by whoever holds storage credentials"
		if !ev.Remote {
			c.find("a local directory cannot enforce retention; use an S3 bucket with Object Lock (init --object-lock compliance)")
		}
		return c
	}
	c.find("Object Lock in %s mode, minimum retention %s", ol.Mode, repositoryRetention(ol.MinRetention))
	bad := false
	if ev.LockEnforced != nil && !*ev.LockEnforced {
		bad = true
		c.find("the storage does not enforce Object Lock on the bucket")
	}
	if ol.Mode != "compliance" {
		bad = true
		c.find("%s mode can be bypassed by a user with the permission to: SEC 17a-4(f) needs compliance mode", ol.Mode)
	}
	for _, name := range ev.Classes.Names() {
		cl := ev.Classes[name]
		if cl.Floor.Zero() {
			continue
		}
		at := ev.To
		if end := cl.Floor.After(at); end.Sub(at) > ol.MinRetention {
			bad = true
			c.find("class %s keeps its snapshots %s, longer than the minimum retention %s: the storage protects them only for the latter", name, cl.Floor, repositoryRetention(ol.MinRetention))
		}
	}
	if bad {
		c.Status = Fail
		c.Summary = "Object Lock does not protect every snapshot as required"
	} else {
		c.Status = Pass
		c.Summary = fmt.Sprintf("Object Lock in %s mode with a minimum retention of %s", ol.Mode, repositoryRetention(ol.MinRetention))
	}
	return c
}

func repositoryRetention(d time.Duration) string { return fmtDur(d) }

// legalHolds lists every hold placed and released (by whom, when), and
// checks that each was recorded in the audit log and enforced by the
// storage where the repository has Object Lock.
func (ev *Evidence) legalHolds() *Control {
	c := &Control{ID: "legal-holds", Title: "Legal holds are recorded, enforced, and released only by a recorded command",
		Clauses: []Clause{gdpr17, finra4511, sec17a4f}}
	recorded := make(map[string]*Record)
	for i := range ev.Log.Records {
		r := &ev.Log.Records[i]
		for _, hid := range r.objects(wroteHold) {
			recorded[hid] = r
		}
	}
	var holds []*hold.Record
	for _, h := range ev.Holds {
		if h.Time.Before(ev.To) {
			holds = append(holds, h)
		}
	}
	if len(holds) == 0 {
		c.Status = NotApplicable
		c.Summary = "no legal hold was ever placed"
		return c
	}
	bad := 0
	for _, h := range holds {
		verb := "placed"
		if h.Action == hold.ActionRelease {
			verb = "released"
		}
		line := fmt.Sprintf("case %s on snapshot %s: %s by %s@%s at %s (%s)", h.Case, h.Snapshot.Short(), verb, h.User, h.Host, fmtTime(h.Time), h.Reason)
		if r := recorded[h.ID.String()]; r != nil {
			c.cite(r.Position)
			line += fmt.Sprintf(", record %d", r.Position)
		} else {
			bad++
			line += ": NO AUDIT RECORD wrote it"
		}
		if !h.Enforced {
			line += ", not enforced by the storage"
			if ev.Config.ObjectLock != nil {
				bad++
			}
		}
		c.find("%s", line)
	}
	active := hold.Active(holds)
	for _, h := range active {
		c.find("in force at the end of the period: case %s on snapshot %s since %s", h.Case, h.Snapshot.Short(), fmtTime(h.Time))
	}
	for _, p := range ev.HoldsCheck {
		bad++
		c.find("case %s on snapshot %s: NOT HELD by the storage: %d of its %d objects carry no legal hold (run 'nestguard hold add' again)", p.Record.Case, p.Record.Snapshot.Short(), p.Unheld, p.Objects)
	}
	if ev.HoldsCheckErr != nil {
		bad++
		c.find("the storage could not confirm the legal holds in force: %v", ev.HoldsCheckErr)
	}
	if bad > 0 {
		c.Status = Fail
		c.Summary = fmt.Sprintf("%d hold events not recorded in the audit log or not enforced", bad)
	} else {
		c.Status = Pass
		c.Summary = fmt.Sprintf("%d hold events, all recorded; %d holds in force", len(holds), len(active))
	}
	return c
}

// encryption states the algorithms at rest and in transit.
func (ev *Evidence) encryption() *Control {
	c := &Control{ID: "encryption", Title: "Data is encrypted at rest and in transit",
		Clauses: []Clause{soxITGC, pci35, gdpr32, isoCrypto}}
	for _, r := range ev.Log.Records {
		if r.Command == cmdInit {
			c.cite(r.Position)
		}
	}
	if ev.Config.Created.After(ev.To) {
		c.Status = NoEvidence
		c.Summary = fmt.Sprintf("the repository was created %s, after the end of the period: nothing of it was stored then", fmtTime(ev.Config.Created))
		return c
	}
	alg := ev.Config.Algorithms
	if alg.Encryption == "" {
		c.Status = Fail
		c.Summary = "the repository's configuration names no encryption"
		return c
	}
	fips := "no"
	if alg.FIPS() {
		fips = "yes (FIPS 140-3 approved algorithms only)"
	}
	c.find("at rest: %s (authenticated encryption of every object), key slots by %s, blob ids %s; FIPS repository: %s", alg.Encryption, alg.KDF, alg.BlobID, fips)
	if ev.Remote {
		c.find("in transit: TLS 1.3 at least, enforced by nestguard's client")
	} else {
		c.find("in transit: a local directory, no network")
	}
	c.Status = Pass
	c.Summary = "encrypted at rest with " + alg.Encryption
	return c
}

// copies checks that snapshots were copied to a second repository, and
// recently: the newest copy from this repository in the period succeeded
// and is no older than the longest RPO of the classes (a day without).
func (ev *Evidence) copies() *Control {
	c := &Control{ID: "copies", Title: "Backups are copied to a second repository, recently",
		Clauses: []Clause{soxITGC, pci94, pci1210, gdpr32, isoBackup, isoReadiness}}
	limit := 24 * time.Hour
	var longest time.Duration
	for _, cl := range ev.Classes {
		longest = max(longest, cl.RPO)
	}
	if longest > 0 {
		limit = longest
	}
	var last *Record
	for _, r := range ev.window() {
		if r.Command != cmdCopy {
			continue
		}
		to := r.Options["to-repo"]
		if to == "" {
			to = r.Options["repo"]
		}
		if from := ev.redact(r.Options["from-repo"]); from != r.Repository {
			c.find("record %d: a copy into this repository from %s at %s: %s", r.Position, from, fmtTime(r.Time), r.Outcome)
			continue
		}
		c.cite(r.Position)
		c.find("record %d: copy to %s at %s by %s: %s", r.Position, ev.redact(to), fmtTime(r.Time), r.who(), r.Outcome)
		last = &r
	}
	switch {
	case last == nil:
		c.Status = NoEvidence
		c.Summary = "no copy from this repository to another in the period"
	case last.Outcome != audit.Success:
		c.Status = Fail
		c.Summary = fmt.Sprintf("the newest copy (record %d) ended: %s", last.Position, last.Outcome)
	case ev.To.Sub(last.Time) > limit:
		c.Status = Fail
		c.Summary = fmt.Sprintf("the newest copy (record %d) is %s old at the end of the period, more than %s", last.Position, fmtDur(ev.To.Sub(last.Time)), fmtDur(limit))
	default:
		c.Status = Pass
		c.Summary = fmt.Sprintf("the newest copy (record %d, %s) succeeded, %s before the end of the period", last.Position, fmtTime(last.Time), fmtDur(ev.To.Sub(last.Time)))
	}
	return c
}

// verifyReadData reports the newest 'verify --read-data' of the period.
func (ev *Evidence) verifyReadData() *Control {
	c := &Control{ID: "verify-read-data", Title: "Stored data is read back and authenticated (verify --read-data)",
		Clauses: []Clause{soxITGC, pci1210, gdpr32, isoBackup}}
	var last *Record
	for _, r := range ev.window() {
		if r.Command != cmdVerify || r.Options["read-data"] == "" {
			continue
		}
		c.cite(r.Position)
		last = &r
	}
	switch {
	case last == nil:
		c.Status = NoEvidence
		c.Summary = "no verify --read-data ran in the period"
		return c
	case last.Outcome == audit.Success:
		c.Status = Pass
	default:
		c.Status = Fail
	}
	c.Summary = fmt.Sprintf("the newest verify --read-data (record %d, %s, %s of the packs) ended: %s", last.Position, fmtTime(last.Time), last.Options["read-data"], last.Outcome)
	if last.Message != "" {
		c.find("%s", last.Message)
	}
	return c
}

// restoreTest reports the newest restore of the period and its measured
// duration against the RTO of the class of what it restored.
func (ev *Evidence) restoreTest() *Control {
	c := &Control{ID: "restore-test", Title: "Restores are tested, within the data class's RTO",
		Clauses: []Clause{soxITGC, pci1210, gdpr32, isoBackup, isoDisrupt, isoReadiness}}
	var last *Record
	for _, r := range ev.window() {
		if r.Command != cmdRestore && r.Command != cmdPGRestore {
			continue
		}
		c.cite(r.Position)
		c.find("record %d: %s at %s by %s took %s: %s", r.Position, r.Command, fmtTime(r.Time), r.who(), fmtDur(r.Duration), r.Outcome)
		last = &r
	}
	if last == nil {
		c.Status = NoEvidence
		c.Summary = "no restore ran in the period"
		return c
	}
	sn := ev.restored(last)
	what := "an unknown snapshot"
	var rto time.Duration
	cls := ""
	if sn != nil {
		what = "snapshot " + sn.ID.Short()
		if cl := ev.Classes[sn.Class]; cl != nil {
			rto, cls = cl.RTO, cl.Name
		}
	}
	if last.Command == cmdPGRestore && last.Options["start"] != "true" {
		c.find("the newest restore is a pg restore without --start: its time does not include recovery")
	}
	head := fmt.Sprintf("the newest restore (record %d, %s of %s) took %s", last.Position, last.Command, what, fmtDur(last.Duration))
	switch {
	case last.Outcome != audit.Success:
		c.Status = Fail
		c.Summary = head + " and ended: " + last.Outcome
	case rto > 0 && last.Duration > rto:
		c.Status = Fail
		c.Summary = fmt.Sprintf("%s, more than the RTO of class %s (%s)", head, cls, fmtDur(rto))
	case rto > 0:
		c.Status = Pass
		c.Summary = fmt.Sprintf("%s, within the RTO of class %s (%s)", head, cls, fmtDur(rto))
	default:
		c.Status = Pass
		c.Summary = head + ", and succeeded (no RTO set for its class)"
	}
	return c
}

// restored returns the snapshot restore record r restored, if it still
// exists: named by id prefix, or the newest before r ("latest", and
// pg restore, which picks the newest base backup).
func (ev *Evidence) restored(r *Record) *snapshot.Snapshot {
	ref := "latest"
	if r.Command == cmdRestore && len(r.Args) > 0 {
		ref = r.Args[0]
	}
	var found *snapshot.Snapshot
	for _, sn := range ev.Snapshots {
		switch {
		case ref != "latest":
			if strings.HasPrefix(sn.ID.String(), strings.ToLower(ref)) {
				return sn
			}
		case sn.Time.After(r.Time):
		case r.Command == cmdPGRestore && sn.Kind != snapshot.KindPostgres:
		case r.Command == cmdRestore && sn.Kind == snapshot.KindPostgres:
		default:
			found = sn
		}
	}
	return found
}

// keyAge checks how long the master key and each key slot have been in
// use against MaxKeyAge.
func (ev *Evidence) keyAge() *Control {
	c := &Control{ID: "key-age", Title: "Keys are rotated (key age)",
		Clauses: []Clause{pci35, gdpr32, isoCrypto}}
	limit := ev.MaxKeyAge
	if limit <= 0 {
		limit = 365 * 24 * time.Hour
	}
	for _, r := range ev.Log.Records {
		if r.Command == cmdInit || (r.Command == cmdKeyAdd && len(r.objects(wroteKey)) > 0) {
			c.cite(r.Position)
		}
	}
	if ev.Config.Created.After(ev.To) {
		c.Status = NoEvidence
		c.Summary = fmt.Sprintf("the repository was created %s, after the end of the period: no key existed in it", fmtTime(ev.Config.Created))
		return c
	}
	old := 0
	if !ev.Config.Created.IsZero() {
		age := ev.To.Sub(ev.Config.Created)
		c.find("master key: created %s with the repository, %s old (nestguard cannot rotate it yet: copy to a new repository to rotate)", fmtTime(ev.Config.Created), fmtDur(age))
		if age > limit {
			old++
		}
	}
	for _, k := range ev.Keys {
		if k.Malformed != "" {
			c.find("key slot %s: malformed: %s", short(k.ID), k.Malformed)
			continue
		}
		age := ev.To.Sub(k.Created)
		line := fmt.Sprintf("key slot %s (%s@%s", short(k.ID), k.Username, k.Hostname)
		if k.Label != "" {
			line += ", " + k.Label
		}
		if age < 0 {
			c.find("%s): created %s, after the end of the period: not counted", line, fmtTime(k.Created))
			continue
		}
		line += fmt.Sprintf("): created %s, %s old", fmtTime(k.Created), fmtDur(age))
		if age > limit {
			old++
			line += ", older than " + fmtDur(limit)
		}
		c.find("%s", line)
	}
	switch {
	case len(ev.Keys) == 0 && ev.Config.Created.IsZero():
		c.Status = NoEvidence
		c.Summary = "no key information"
	case old > 0:
		c.Status = Fail
		c.Summary = fmt.Sprintf("%d keys older than %s", old, fmtDur(limit))
	default:
		c.Status = Pass
		c.Summary = fmt.Sprintf("every key younger than %s", fmtDur(limit))
	}
	return c
}

// failedOperations lists every command (and batched call) of the period
// that did not succeed.
func (ev *Evidence) failedOperations() *Control {
	c := &Control{ID: "failed-operations", Title: "Every failed operation is listed for follow-up",
		Clauses: []Clause{soxITGC, pci102, pci1210, isoLogging, isoDisrupt}}
	win := ev.window()
	if len(win) > 0 {
		c.cite(win[0].Position, win[len(win)-1].Position)
	}
	// A Started record is a command's first, before it removes anything:
	// a failure only when no later record of the command gives its
	// outcome (killed, crashed).
	finished := make(map[uint64]bool)
	for _, r := range ev.Log.Records {
		if r.IntentRecord != nil {
			finished[*r.IntentRecord] = true
		}
	}
	failed := 0
	for _, r := range win {
		if r.Outcome == audit.Started {
			if !finished[r.Position] {
				failed++
				c.cite(r.Position)
				c.find("record %d: %s %s at %s by %s started removing (%s) and recorded no outcome: killed or crashed partway; check what it removed",
					r.Position, r.Command, strings.Join(r.Args, " "), fmtTime(r.Time), r.who(), strings.Join(r.Intent, ", "))
			}
			continue
		}
		if r.Outcome != audit.Success && len(r.Batch) == 0 {
			failed++
			c.cite(r.Position)
			c.find("record %d: %s %s at %s by %s: %s: %s", r.Position, r.Command, strings.Join(r.Args, " "), fmtTime(r.Time), r.who(), r.Outcome, r.Message)
		}
		for _, it := range r.Batch {
			if it.Outcome != audit.Success {
				failed++
				c.cite(r.Position)
				c.find("record %d: %s %s at %s by %s: %s: %s", r.Position, r.Command, it.Arg, fmtTime(it.Time), r.who(), it.Outcome, it.Message)
			}
		}
	}
	switch {
	case len(win) == 0:
		c.Status = NoEvidence
		c.Summary = "the audit log has no record in the period"
	case failed > 0:
		c.Status = Fail
		c.Summary = fmt.Sprintf("%d failed operations among %d records", failed, len(win))
	default:
		c.Status = Pass
		c.Summary = fmt.Sprintf("%d records, none failed", len(win))
	}
	return c
}

// auditTrail checks the audit log itself: it verifies and every record
// opens.
func (ev *Evidence) auditTrail() *Control {
	c := &Control{ID: "audit-trail", Title: "The audit trail is complete and tamper-evident",
		Clauses: []Clause{soxITGC, pci102, pci105, finra4511, sec17a4f, isoLogging}}
	l := ev.Log
	win := ev.window()
	if len(win) > 0 {
		c.cite(win[0].Position, win[len(win)-1].Position)
	}
	for _, p := range l.Problems {
		c.find("audit verify: %s", p)
	}
	for _, d := range l.Damaged {
		c.find("damaged record: %s", d)
	}
	switch {
	case len(l.Problems) > 0 || len(l.Damaged) > 0:
		c.Status = Fail
		c.Summary = fmt.Sprintf("the audit log does not verify: %d problems, %d damaged records", len(l.Problems), len(l.Damaged))
	case l.Checkpoint == nil || len(win) == 0:
		c.Status = NoEvidence
		c.Summary = "the audit log has no record in the period"
	default:
		c.Status = Pass
		c.Summary = fmt.Sprintf("the log verifies: %d records in the period, signed checkpoint of size %d", len(win), l.Checkpoint.Size)
	}
	return c
}

// plural is "1 thing" or "n things".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
