package class

import (
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/config"
	"github.com/nestguard/nestguard/internal/policy"
)

func load(t *testing.T, toml string) (Set, error) {
	t.Helper()
	f, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return Load(f)
}

func TestLoad(t *testing.T) {
	set, err := load(t, `
repo = "/srv/backup"

[backup]
tag = ["nightly"]

[class.financial-records]
floor        = "7y"
keep-daily   = 35
keep-monthly = 84
keep-within  = "1m"
keep-tag     = ["audit", "year-end,signed"]

[class.logs]
floor = "90d"
rpo   = "1h30m"
rto   = "2d"
`)
	if err != nil {
		t.Fatal(err)
	}
	if names := set.Names(); strings.Join(names, " ") != "financial-records logs" {
		t.Fatalf("classes %v", names)
	}
	fin := set["financial-records"]
	want := policy.Policy{KeepDaily: 35, KeepMonthly: 84, KeepWithin: policy.Duration{Months: 1}, KeepTags: [][]string{{"audit"}, {"year-end", "signed"}}}
	if fin.Floor != (policy.Duration{Years: 7}) || fin.Policy.KeepDaily != want.KeepDaily || fin.Policy.KeepMonthly != 84 ||
		fin.Policy.KeepWithin != want.KeepWithin || len(fin.Policy.KeepTags) != 2 || fin.Policy.KeepTags[1][1] != "signed" {
		t.Errorf("financial-records: %+v", fin)
	}
	logs := set["logs"]
	if logs.Floor != (policy.Duration{Days: 90}) || !logs.Policy.Empty() || logs.RPO != 90*time.Minute || logs.RTO != 48*time.Hour || fin.RPO != 0 {
		t.Errorf("logs: %+v", logs)
	}
	at := time.Date(2026, 12, 15, 3, 0, 0, 0, time.UTC)
	if got := logs.KeepUntil(at); !got.Equal(time.Date(2027, 3, 15, 3, 0, 0, 0, time.UTC)) {
		t.Errorf("logs floor from %v ends %v", at, got)
	}
	if _, err := set.Lookup("log", "/etc/nestguard/nestguard.toml"); err == nil || !strings.Contains(err.Error(), "financial-records, logs") {
		t.Errorf("Lookup of an unknown class: %v", err)
	}
	if _, err := (Set{}).Lookup("logs", "/etc/n.toml"); err == nil || !strings.Contains(err.Error(), "/etc/n.toml defines no classes") {
		t.Errorf("Lookup without classes: %v", err)
	}
	if set, err := Load(nil); err != nil || len(set) != 0 {
		t.Errorf("Load(nil): %v %v", set, err)
	}
}

func TestLoadRefuses(t *testing.T) {
	for toml, want := range map[string]string{
		"[class.logs]\nflor = \"90d\"\n":                         `unknown class setting "flor"`,
		"[class.logs]\nfloor = \"90 days\"\n":                    "invalid duration",
		"[class.logs]\nfloor = 90\n":                             "invalid duration",
		"[class.logs]\nkeep-daily = \"many\"\n":                  "want a count",
		"[class.logs]\nkeep-daily = -2\n":                        "keep-daily -2",
		"[class.logs]\nkeep-tag = \"a,,b\"\n":                    "empty tag",
		"[class.logs]\nfloor = [\"1d\", \"2d\"]\n":               "takes one value",
		"[class]\nfloor = \"1d\"\n":                              "a data class is a table [class.NAME]",
		"[class.Logs]\nfloor = \"1d\"\n":                         "invalid class name",
		"[class.logs.old]\nfloor = \"1d\"\n":                     "a data class is a table",
		"[class.\"a b\"]\nfloor = \"1d\"\n":                      "invalid class name",
		"[class.logs]\nrpo = \"0s\"\n":                           "invalid objective",
		"[class.logs]\nrto = \"1y\"\n":                           "invalid objective",
		"[class.x]\nkeep-within-daily = \"1d\"\nkeep-last = 0\n": "",
		"[class.x]\nfloor = \"1y\"\nkeep-daily = 0\n":            "keep-daily = 0 keeps no snapshot",
		"[class.x]\nkeep-within = \"0d\"\nkeep-last = 0\n":       "keep-within = 0, keep-last = 0 keeps",
		"[class.x]\nfloor = \"0d\"\n":                            "floor = 0d keeps nothing",
	} {
		_, err := load(t, toml)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", toml, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "test.toml") {
			t.Errorf("%q: %v, want an error naming the file and %q", toml, err, want)
		}
	}
}
