// Package metrics records the outcome of nestguard commands in the
// Prometheus text format, for node_exporter's textfile collector: a backup
// run from cron or a systemd timer leaves behind when it last ran, how it
// ended and what it did, and an alert on the age of the last success
// catches the runs that did not happen at all.
//
// One file may serve every command and repository: Write replaces the
// series of its own command and repository and keeps the others.
package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nestguard/nestguard/internal/atomicfile"
)

// Run describes one finished command.
type Run struct {
	Command  string // "backup", "pg backup", ...: the label "command"
	Repo     string // the repository as given, without credentials: the label "repo"
	Start    time.Time
	Duration time.Duration
	ExitCode int // 0 ok, 1 error, 2 usage, 3 partial
	// Values are the command's own gauges: "files" of "pg backup" becomes
	// nestguard_pg_backup_files. Write refuses a key not of the form
	// [a-z_][a-z0-9_]*.
	Values map[string]float64
}

// The metrics every run writes.
const (
	lastRun     = "nestguard_last_run_timestamp_seconds"
	duration    = "nestguard_last_run_duration_seconds"
	exitCode    = "nestguard_last_run_exit_code"
	success     = "nestguard_last_run_success"
	lastSuccess = "nestguard_last_success_timestamp_seconds"
)

var help = map[string]string{
	lastRun:     "When the command last ended (Unix time).",
	duration:    "How long the last run of the command took.",
	exitCode:    "Exit code of the last run: 0 ok, 1 error, 2 usage error, 3 partial (done, but some files unreadable or damaged).",
	success:     "1 if the last run ended with exit code 0, else 0 (a partial run is not a success).",
	lastSuccess: "When the command last ended with exit code 0 (Unix time); kept across failed runs.",
}

// validKey reports whether s is of the form [a-z_][a-z0-9_]*: a value's
// key, and the metric names made of it.
func validKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '_' || 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

const prefix = "nestguard_"

// Write records r in the file at path, atomically (a temporary file in the
// same directory, synced, then renamed), so the collector never reads half
// a file. Series of other commands or repositories already in the file are
// kept, and so is r's last success when r failed. A previous file that
// does not parse is replaced: its history is lost, which the next success
// repairs, and a broken file must not stop monitoring.
func Write(path string, r Run) error {
	fams, err := build(r)
	if err != nil {
		return err
	}
	// Commands may end at the same time (archive-wal during a backup):
	// the lock keeps one from dropping the other's series.
	unlock, err := lock(path + ".lock")
	if err != nil {
		return fmt.Errorf("metrics file %s: %w", path, err)
	}
	defer unlock()
	old, err := read(path)
	var pe *fs.PathError
	switch {
	case err == nil:
		merge(fams, old, r)
	case errors.Is(err, fs.ErrNotExist):
	case errors.As(err, &pe):
		return fmt.Errorf("metrics file %s: %w", path, err)
	}
	var buf bytes.Buffer
	for _, name := range sortedNames(fams) {
		writeText(&buf, fams[name])
	}
	// The collector runs as another user; the file holds no secrets.
	if err := atomicfile.Write(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("metrics file %s: %w", path, err)
	}
	return nil
}

func labels(r Run) []label {
	return []label{{"command", r.Command}, {"repo", r.Repo}}
}

func gauge(name, helpText string, lp []label, v float64) *family {
	return &family{name: name, help: helpText, gauge: true, series: []series{{labels: lp, value: v}}}
}

// build returns the families of r alone.
func build(r Run) (map[string]*family, error) {
	if r.Command == "" {
		return nil, errors.New("metrics: a run needs its command")
	}
	if r.Start.IsZero() {
		return nil, fmt.Errorf("metrics: the %q run has no start time", r.Command)
	}
	end := r.Start.Add(r.Duration)
	ts := float64(end.UnixNano()) / 1e9
	ok := 0.0
	if r.ExitCode == 0 {
		ok = 1
	}
	fams := map[string]*family{
		lastRun:  gauge(lastRun, help[lastRun], labels(r), ts),
		duration: gauge(duration, help[duration], labels(r), r.Duration.Seconds()),
		exitCode: gauge(exitCode, help[exitCode], labels(r), float64(r.ExitCode)),
		success:  gauge(success, help[success], labels(r), ok),
	}
	if r.ExitCode == 0 {
		fams[lastSuccess] = gauge(lastSuccess, help[lastSuccess], labels(r), ts)
	}
	cmd := strings.ReplaceAll(r.Command, " ", "_")
	cmd = strings.ReplaceAll(cmd, "-", "_")
	for k, v := range r.Values {
		if !validKey(k) {
			return nil, fmt.Errorf("metrics: value name %q is not of the form [a-z_][a-z0-9_]*", k)
		}
		name := prefix + cmd + "_" + k
		// A collector that knows only the classic form skips the whole
		// file over one quoted name; a value must not stand in for a
		// gauge every run writes.
		if !validKey(name) {
			return nil, fmt.Errorf("metrics: command %q gives the metric name %q, not of the form [a-z_][a-z0-9_]*", r.Command, name)
		}
		if help[name] != "" {
			return nil, fmt.Errorf("metrics: value %q of %q would overwrite %s", k, r.Command, name)
		}
		fams[name] = gauge(name, fmt.Sprintf("%s of the last %q run.", k, r.Command), labels(r), v)
	}
	return fams, nil
}

func read(path string) (map[string]*family, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseText(f)
}

// merge adds to fams the series of old that belong to other runs, and r's
// last success when r failed.
func merge(fams, old map[string]*family, r Run) {
	for name, of := range old {
		if !strings.HasPrefix(name, prefix) || !of.gauge {
			continue
		}
		for _, m := range of.series {
			same := sameRun(m, r)
			if same && !(name == lastSuccess && r.ExitCode != 0) {
				continue // replaced by this run
			}
			nf := fams[name]
			if nf == nil {
				nf = &family{name: name, help: of.help, gauge: true}
				fams[name] = nf
			}
			nf.series = append(nf.series, m)
		}
	}
}

func sameRun(m series, r Run) bool {
	return m.get("command") == r.Command && m.get("repo") == r.Repo
}

func sortedNames(fams map[string]*family) []string {
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
