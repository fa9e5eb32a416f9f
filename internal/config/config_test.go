package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const sample = `# nestguard
repo = "s3://ledger-backups/prod"
password-file = "/etc/nestguard/pass"
s3-path-style = true

[backup]
exclude = ["*.tmp", "/srv/app/cache"]
one-file-system = true

[pg.backup]
pgdata = "/var/lib/postgresql/15/main"
workers = 4
`

func TestParse(t *testing.T) {
	f, err := Parse("test.toml", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range f.Settings {
		got = append(got, s.Where()+"="+strings.Join(s.Values, ","))
	}
	want := []string{
		"repo=s3://ledger-backups/prod",
		"password-file=/etc/nestguard/pass",
		"s3-path-style=true",
		"[backup] exclude=*.tmp,/srv/app/cache",
		"[backup] one-file-system=true",
		"[pg.backup] pgdata=/var/lib/postgresql/15/main",
		"[pg.backup] workers=4",
	}
	if !slices.Equal(got, want) {
		t.Errorf("settings:\n got %q\nwant %q", got, want)
	}
	if n := len(f.Section()); n != 3 {
		t.Errorf("top level has %d settings, want 3", n)
	}
	if s := f.Section("pg", "backup"); len(s) != 2 || s[1].Key != "workers" {
		t.Errorf("[pg.backup] = %+v", s)
	}
	if s := f.Section("pg"); len(s) != 0 {
		t.Errorf("[pg] has settings %+v, want none", s)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"syntax", "repo = \"/srv\"\nexclude = [\n", "line 2"},
		{"unquoted", "repo = /srv/backup\n", "line 1"},
		{"password", "password = \"hunter2\"\n", "secrets are not read from the config file"},
		{"password in a table", "[backup]\npassphrase = \"x\"\n", "[backup] passphrase: secrets"},
		{"date", "since = 2026-01-02\n", "not a flag value"},
		{"inline table in array", "exclude = [{a = 1}]\n", "array element"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bad.toml") {
				t.Fatalf("error %v, want one naming bad.toml and %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q repeats the secret", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "nestguard.toml")
	if err := os.WriteFile(p, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path != p || len(f.Settings) != 7 {
		t.Errorf("loaded %s with %d settings", f.Path, len(f.Settings))
	}

	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("a world-writable file: %v, want a refusal", err)
	}

	_, err = Load(filepath.Join(dir, "missing.toml"))
	if !IsNotExist(err) {
		t.Errorf("missing file: %v, want not-exist", err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
}
