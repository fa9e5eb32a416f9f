package pg

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/atomicfile"
)

// Recovery target actions (recovery_target_action).
const (
	ActionPause    = "pause"
	ActionPromote  = "promote"
	ActionShutdown = "shutdown"
)

// RecoveryConfig is what a restore writes for PostgreSQL's archive
// recovery: appended to postgresql.auto.conf, with recovery.signal (or
// standby.signal, Standby).
type RecoveryConfig struct {
	RestoreCommand string
	Target         Target
	Action         string // ActionPause (PostgreSQL's default), ActionPromote or ActionShutdown
	// ArchiveOff writes archive_mode = off: the restored server archives
	// nothing, also once promoted (a drill's or a test's copy, which must
	// not write a timeline of its own into the production repository).
	ArchiveOff bool
	// Standby configures a standby instead of a recovery to a target:
	// standby.signal, no recovery target or action (Target may only say
	// Latest, and its Timeline), so that the server replays the WAL as it
	// is archived, follows the primary's promotions (timeline latest),
	// and stays in recovery until it is promoted itself.
	Standby bool
	// PrimaryConninfo, for a standby, is written as primary_conninfo: it
	// streams from that server too, and falls back to the archive. Never
	// with a password (a password file on the standby holds it).
	PrimaryConninfo string
}

// recoveryParams are the settings a restore owns. Earlier values of them
// in postgresql.auto.conf (for example from a previous restore of the
// cluster that was backed up) are commented out, or they would override
// the new target.
var recoveryParams = []string{
	"restore_command", "recovery_end_command", "recovery_target", "recovery_target_name",
	"recovery_target_time", "recovery_target_xid", "recovery_target_lsn",
	"recovery_target_inclusive", "recovery_target_timeline", "recovery_target_action",
}

// settings returns the parameters to write, in order.
func (rc RecoveryConfig) settings() ([][2]string, error) {
	if rc.RestoreCommand == "" {
		return nil, errors.New("no restore_command: PostgreSQL could not fetch the WAL to replay")
	}
	if rc.Standby {
		return rc.standbySettings()
	}
	if rc.PrimaryConninfo != "" {
		return nil, errors.New("primary_conninfo is for a standby: a recovery to a target reads the archive only")
	}
	t := rc.Target
	out := [][2]string{{"restore_command", rc.RestoreCommand}}
	n := 0
	if t.Time != nil {
		n++
		// Microseconds in UTC: PostgreSQL's own resolution, unambiguous
		// whatever the server's TimeZone is.
		out = append(out, [2]string{"recovery_target_time", t.Time.UTC().Format("2006-01-02 15:04:05.999999-07")})
	}
	if t.LSN != nil {
		n++
		out = append(out, [2]string{"recovery_target_lsn", t.LSN.String()})
	}
	if t.XID != "" {
		n++
		if _, err := strconv.ParseUint(t.XID, 10, 64); err != nil {
			return nil, fmt.Errorf("recovery target transaction id %q: want a number", t.XID)
		}
		out = append(out, [2]string{"recovery_target_xid", t.XID})
	}
	if t.Name != "" {
		n++
		out = append(out, [2]string{"recovery_target_name", t.Name})
	}
	if t.Latest {
		n++
	}
	if n != 1 {
		return nil, fmt.Errorf("give exactly one recovery target (time, LSN, transaction id, restore point name or latest); %d given", n)
	}
	tl, err := timelineSetting(t.Timeline)
	if err != nil {
		return nil, err
	}
	out = append(out, [2]string{"recovery_target_timeline", tl})
	action := rc.Action
	if action == "" {
		action = ActionPause
	}
	switch action {
	case ActionPause, ActionPromote, ActionShutdown:
	default:
		return nil, fmt.Errorf("recovery target action %q: want pause, promote or shutdown", action)
	}
	if t.Latest {
		// recovery_target_action applies only when a target is set; at the
		// end of the archive PostgreSQL always ends recovery and promotes.
		if action != ActionPromote {
			return nil, fmt.Errorf("target action %s needs a recovery target: recovering to the latest WAL always ends with the server promoted", action)
		}
	} else {
		out = append(out, [2]string{"recovery_target_action", action})
	}
	return rc.finish(out)
}

// finish appends the settings every restore may add to out, and checks
// that each value is a single line.
func (rc RecoveryConfig) finish(out [][2]string) ([][2]string, error) {
	if rc.ArchiveOff {
		// Appended last to postgresql.auto.conf, it wins over any earlier
		// archive_mode there or in postgresql.conf.
		out = append(out, [2]string{"archive_mode", "off"})
	}
	for _, kv := range out {
		if strings.ContainsAny(kv[1], "\n\r\x00") {
			return nil, fmt.Errorf("%s must be a single line", kv[0])
		}
	}
	return out, nil
}

// standbySettings are a standby's: restore_command, the timeline to
// follow (latest unless a number is given: a standby must follow its
// primary's promotions), and primary_conninfo if given. No recovery
// target: a standby replays whatever is archived, and waits for more.
func (rc RecoveryConfig) standbySettings() ([][2]string, error) {
	t := rc.Target
	if t.Time != nil || t.LSN != nil || t.XID != "" || t.Name != "" {
		return nil, errors.New("a standby has no recovery target: it replays the WAL as it is archived until it is promoted")
	}
	if rc.Action != "" {
		return nil, errors.New("a standby has no recovery target action: it stays in recovery until promoted (pg_ctl promote)")
	}
	tl, err := timelineSetting(t.Timeline)
	if err != nil {
		return nil, err
	}
	out := [][2]string{{"restore_command", rc.RestoreCommand}, {"recovery_target_timeline", tl}}
	if rc.PrimaryConninfo != "" {
		if err := CheckDSN(rc.PrimaryConninfo); err != nil {
			return nil, fmt.Errorf("primary_conninfo: %w", err)
		}
		out = append(out, [2]string{"primary_conninfo", rc.PrimaryConninfo})
	}
	return rc.finish(out)
}

// CheckTimeline checks a --timeline value: latest, current or a
// timeline number in decimal (what timelineSetting takes).
func CheckTimeline(tl string) error {
	_, err := timelineSetting(tl)
	return err
}

// timelineSetting is recovery_target_timeline for tl as a restore takes
// it: latest when empty, latest, current, or a number, written in
// decimal (PostgreSQL reads a leading 0 as octal, "011" as 9, and 0x as
// hexadecimal).
func timelineSetting(tl string) (string, error) {
	if isLatest(tl) || tl == "current" {
		return cmp.Or(tl, "latest"), nil
	}
	v, err := strconv.ParseUint(tl, 10, 32)
	if err != nil || v == 0 {
		return "", fmt.Errorf("recovery timeline %q: want latest, current or a timeline number", tl)
	}
	return strconv.FormatUint(v, 10), nil
}

// quoteConf quotes a value for postgresql.conf: the parser reads
// backslash escapes inside quotes, so both quotes and backslashes are
// doubled, as ALTER SYSTEM writes them.
func quoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// confParam returns the parameter a postgresql.conf line sets, lower case,
// or "" for comments and blank lines.
func confParam(line string) string {
	s := strings.TrimLeft(line, " \t")
	end := strings.IndexFunc(s, func(r rune) bool {
		return !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
	if end < 0 {
		end = len(s)
	}
	return strings.ToLower(s[:end])
}

// renderAutoConf returns postgresql.auto.conf with earlier recovery
// settings commented out and the new ones appended.
func renderAutoConf(old []byte, rc RecoveryConfig, now time.Time) ([]byte, error) {
	kv, err := rc.settings()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(old))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p := confParam(line); p != "" && (isRecoveryParam(p) || rc.ArchiveOff && p == "archive_mode" ||
			rc.PrimaryConninfo != "" && p == "primary_conninfo") {
			line = "# " + line + " # replaced by nestguard pg restore"
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading postgresql.auto.conf: %w", err)
	}
	fmt.Fprintf(&b, "# Recovery settings written by nestguard pg restore at %s\n", now.UTC().Format(time.RFC3339))
	for _, p := range kv {
		fmt.Fprintf(&b, "%s = %s\n", p[0], quoteConf(p[1]))
	}
	return b.Bytes(), nil
}

func isRecoveryParam(p string) bool {
	for _, r := range recoveryParams {
		if p == r {
			return true
		}
	}
	return false
}

// WriteRecoveryConfig writes the recovery settings into dataDir's
// postgresql.auto.conf and creates recovery.signal, which makes the next
// start of the server an archive recovery (standby.signal for a standby:
// a recovery that does not end when the archive does). Each file is renamed into
// place whole but not synced: the caller syncs the data directory after
// (Restore's syncRestored, one syncfs for everything it wrote).
func WriteRecoveryConfig(dataDir string, rc RecoveryConfig) error {
	p := filepath.Join(dataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	conf, err := renderAutoConf(old, rc, time.Now())
	if err != nil {
		return err
	}
	if err := atomicfile.WriteUnsynced(p, conf, 0o600); err != nil {
		return err
	}
	signal := "recovery.signal"
	if rc.Standby {
		signal = "standby.signal"
	}
	return atomicfile.WriteUnsynced(filepath.Join(dataDir, signal), nil, 0o600)
}
