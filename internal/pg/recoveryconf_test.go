package pg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRecoverySettings(t *testing.T) {
	tm := time.Date(2024, 5, 1, 13, 59, 0, 123456000, time.FixedZone("", 2*3600))
	lsn := LSN(0x16_B374D848)
	for _, tc := range []struct {
		name string
		rc   RecoveryConfig
		want []string // "k=v" in order
		err  string
	}{
		{"time", RecoveryConfig{RestoreCommand: "x %f %p", Target: Target{Time: &tm}, Action: ActionPromote},
			[]string{"restore_command=x %f %p", "recovery_target_time=2024-05-01 11:59:00.123456+00", "recovery_target_timeline=latest", "recovery_target_action=promote"}, ""},
		{"lsn default pause", RecoveryConfig{RestoreCommand: "x", Target: Target{LSN: &lsn, Timeline: "2"}},
			[]string{"restore_command=x", "recovery_target_lsn=16/B374D848", "recovery_target_timeline=2", "recovery_target_action=pause"}, ""},
		// PostgreSQL reads "011" as octal 9: the number checked (11) is
		// written in decimal (hostile test: the copy followed timeline 9).
		{"leading zero", RecoveryConfig{RestoreCommand: "x", Target: Target{LSN: &lsn, Timeline: "011"}},
			[]string{"restore_command=x", "recovery_target_lsn=16/B374D848", "recovery_target_timeline=11", "recovery_target_action=pause"}, ""},
		{"hex", RecoveryConfig{RestoreCommand: "x", Target: Target{Latest: true, Timeline: "0x0B"}, Action: ActionPromote}, nil, "timeline"},
		{"xid", RecoveryConfig{RestoreCommand: "x", Target: Target{XID: "1234"}, Action: ActionShutdown},
			[]string{"restore_command=x", "recovery_target_xid=1234", "recovery_target_timeline=latest", "recovery_target_action=shutdown"}, ""},
		{"name", RecoveryConfig{RestoreCommand: "x", Target: Target{Name: "before it's gone"}},
			[]string{"restore_command=x", "recovery_target_name=before it's gone", "recovery_target_timeline=latest", "recovery_target_action=pause"}, ""},
		{"latest", RecoveryConfig{RestoreCommand: "x", Target: Target{Latest: true}, Action: ActionPromote},
			[]string{"restore_command=x", "recovery_target_timeline=latest"}, ""},
		{"latest pause", RecoveryConfig{RestoreCommand: "x", Target: Target{Latest: true}}, nil, "needs a recovery target"},
		{"none", RecoveryConfig{RestoreCommand: "x"}, nil, "exactly one"},
		{"two", RecoveryConfig{RestoreCommand: "x", Target: Target{Latest: true, Name: "a"}}, nil, "exactly one"},
		{"no command", RecoveryConfig{Target: Target{Latest: true}}, nil, "restore_command"},
		{"bad xid", RecoveryConfig{RestoreCommand: "x", Target: Target{XID: "12a"}}, nil, "transaction id"},
		{"bad timeline", RecoveryConfig{RestoreCommand: "x", Target: Target{Latest: true, Timeline: "0"}, Action: ActionPromote}, nil, "timeline"},
		{"bad action", RecoveryConfig{RestoreCommand: "x", Target: Target{Name: "a"}, Action: "resume"}, nil, "action"},
		{"newline", RecoveryConfig{RestoreCommand: "x\ny", Target: Target{Name: "a"}}, nil, "single line"},
		// A standby: no target, no action, timeline latest unless a
		// number is given, primary_conninfo if given (never a password).
		{"standby", RecoveryConfig{RestoreCommand: "x", Target: Target{Latest: true}, Standby: true},
			[]string{"restore_command=x", "recovery_target_timeline=latest"}, ""},
		{"standby streaming", RecoveryConfig{RestoreCommand: "x", Standby: true, PrimaryConninfo: "host=db1 user=replicator", ArchiveOff: true},
			[]string{"restore_command=x", "recovery_target_timeline=latest", "primary_conninfo=host=db1 user=replicator", "archive_mode=off"}, ""},
		{"standby timeline 011", RecoveryConfig{RestoreCommand: "x", Standby: true, Target: Target{Timeline: "011"}},
			[]string{"restore_command=x", "recovery_target_timeline=11"}, ""},
		{"standby target", RecoveryConfig{RestoreCommand: "x", Standby: true, Target: Target{Name: "a"}}, nil, "no recovery target"},
		{"standby action", RecoveryConfig{RestoreCommand: "x", Standby: true, Target: Target{Latest: true}, Action: ActionPromote}, nil, "no recovery target action"},
		{"standby password", RecoveryConfig{RestoreCommand: "x", Standby: true, PrimaryConninfo: "host=db1 password=s3cret"}, nil, "password"},
		{"conninfo without standby", RecoveryConfig{RestoreCommand: "x", Target: Target{Name: "a"}, PrimaryConninfo: "host=db1"}, nil, "for a standby"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv, err := tc.rc.settings()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range kv {
				got = append(got, p[0]+"="+p[1])
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("settings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestQuoteConf(t *testing.T) {
	for in, want := range map[string]string{
		"plain":               "'plain'",
		"it's":                "'it''s'",
		`C:\dir`:              `'C:\\dir'`,
		`'/bin/ng' %f "%p"\x`: `'''/bin/ng'' %f "%p"\\x'`,
	} {
		if got := quoteConf(in); got != want {
			t.Errorf("quoteConf(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRenderAutoConfReplacesOldRecoverySettings(t *testing.T) {
	old := "# Do not edit this file manually!\n" +
		"work_mem = '8MB'\n" +
		"restore_command = 'old command'\n" +
		"  Recovery_Target_Time='2020-01-01'\n" +
		"recovery_target_timeline = '3'\n" +
		"recovery_target_inclusive = off\n" +
		"recovery_min_apply_delay = 0\n"
	tm := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	out, err := renderAutoConf([]byte(old), RecoveryConfig{RestoreCommand: "new 'cmd' %f %p", Target: Target{Time: &tm}}, tm)
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	for _, want := range []string{
		"work_mem = '8MB'\n",
		"# restore_command = 'old command' # replaced by nestguard pg restore\n",
		"#   Recovery_Target_Time='2020-01-01' # replaced",
		"# recovery_target_timeline = '3' # replaced",
		"# recovery_target_inclusive = off # replaced",
		"recovery_min_apply_delay = 0\n",
		"restore_command = 'new ''cmd'' %f %p'\n",
		"recovery_target_time = '2024-01-02 03:04:05+00'\n",
		"recovery_target_timeline = 'latest'\n",
		"recovery_target_action = 'pause'\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("postgresql.auto.conf lacks %q:\n%s", want, got)
		}
	}
	// Only the new settings are active.
	active := 0
	for line := range strings.SplitSeq(got, "\n") {
		if confParam(line) == "restore_command" {
			active++
		}
	}
	if active != 1 {
		t.Errorf("%d active restore_command lines:\n%s", active, got)
	}
}

func TestWriteRecoveryConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte("max_connections = 20\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteRecoveryConfig(dir, RecoveryConfig{RestoreCommand: "cp /a/%f %p", Target: Target{Name: "x"}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "max_connections = 20\n") || !strings.Contains(string(b), "recovery_target_name = 'x'") {
		t.Errorf("postgresql.auto.conf:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "recovery.signal")); err != nil {
		t.Errorf("recovery.signal: %v", err)
	}
	// An invalid configuration writes nothing.
	dir2 := t.TempDir()
	if err := WriteRecoveryConfig(dir2, RecoveryConfig{Target: Target{Name: "x"}}); err == nil {
		t.Error("no restore_command accepted")
	}
	if _, err := os.Stat(filepath.Join(dir2, "recovery.signal")); err == nil {
		t.Error("recovery.signal written for an invalid configuration")
	}
}

// TestWriteStandbyConfig: a standby gets standby.signal, not
// recovery.signal, and an earlier primary_conninfo (the backed-up
// server's own, if it was a standby) is commented out when a new one is
// given, kept when not.
func TestWriteStandbyConfig(t *testing.T) {
	for _, conninfo := range []string{"", "host=db2"} {
		dir := t.TempDir()
		old := "primary_conninfo = 'host=db0'\n"
		if err := os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte(old), 0o600); err != nil {
			t.Fatal(err)
		}
		rc := RecoveryConfig{RestoreCommand: "cp /a/%f %p", Target: Target{Latest: true}, Standby: true, PrimaryConninfo: conninfo}
		if err := WriteRecoveryConfig(dir, rc); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "standby.signal")); err != nil {
			t.Errorf("standby.signal: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "recovery.signal")); err == nil {
			t.Error("recovery.signal written for a standby")
		}
		b, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
		if err != nil {
			t.Fatal(err)
		}
		kept := strings.HasPrefix(string(b), old)
		if conninfo == "" && !kept || conninfo != "" && (kept || !strings.Contains(string(b), "primary_conninfo = 'host=db2'")) {
			t.Errorf("primary_conninfo %q given:\n%s", conninfo, b)
		}
	}
}

// TestRenderAutoConfArchiveOff: --archive-mode off comments out an earlier
// archive_mode and appends archive_mode = 'off' last; without it an
// earlier archive_mode stays as it was.
func TestRenderAutoConfArchiveOff(t *testing.T) {
	old := "archive_mode = 'on'\narchive_command = 'x %p'\n"
	out, err := renderAutoConf([]byte(old), RecoveryConfig{RestoreCommand: "r %f %p", Target: Target{Latest: true}, Action: ActionPromote, ArchiveOff: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	if !strings.Contains(got, "# archive_mode = 'on' # replaced") || !strings.HasSuffix(got, "archive_mode = 'off'\n") || !strings.Contains(got, "archive_command = 'x %p'\n") {
		t.Errorf("with ArchiveOff:\n%s", got)
	}
	out, err = renderAutoConf([]byte(old), RecoveryConfig{RestoreCommand: "r %f %p", Target: Target{Latest: true}, Action: ActionPromote}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); !strings.HasPrefix(got, old) || strings.Contains(got, "'off'") {
		t.Errorf("without ArchiveOff:\n%s", got)
	}
}
