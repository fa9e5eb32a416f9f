package main

import (
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/metrics"
	"github.com/nestguard/nestguard/internal/snapshot"
)

// monitored marks the commands whose outcome --metrics-file records: the
// scheduled work an operator alerts on, not the read-only look-ups.
const monitored = "nestguard-metrics"

func monitor(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[monitored] = "true"
	return cmd
}

// startRun notes which command runs and when, for writeMetrics.
func (a *app) startRun(cmd *cobra.Command) {
	if cmd.Annotations[monitored] == "" {
		return
	}
	a.command = strings.Join(commandNames(cmd), " ")
	a.started = time.Now()
	a.values = map[string]float64{}
}

// metric records a command-specific value for --metrics-file.
func (a *app) metric(name string, v float64) {
	if a.values != nil {
		a.values[name] = v
	}
}

// summaryMetrics records what a backup did.
func (a *app) summaryMetrics(s *snapshot.Summary) {
	for k, v := range map[string]int64{
		"files": s.Files, "dirs": s.Dirs, "files_new": s.FilesNew, "files_changed": s.FilesChanged,
		"files_unmodified": s.FilesUnmodified, "bytes_processed": s.TotalBytes, "bytes_read": s.BytesRead,
		"bytes_added": s.DataAdded, "bytes_stored": s.DataStored, "errors": s.Errors,
	} {
		a.metric(k, float64(v))
	}
}

// writeMetrics records the finished command in --metrics-file. A failure
// to write it is reported but does not change the exit code: the backup
// itself is what the code is about, and a stale file is what the alert on
// the age of the last success catches.
func (a *app) writeMetrics(code int) {
	if a.metricsFile == "" || a.command == "" {
		return
	}
	err := metrics.Write(a.metricsFile, metrics.Run{
		Command:  a.command,
		Repo:     redactRepo(a.repo),
		Start:    a.started,
		Duration: time.Since(a.started),
		ExitCode: code,
		Values:   a.values,
	})
	if err != nil {
		// An error-level log line: shown with --quiet too (the
		// monitoring that reads the file goes stale meanwhile), and a
		// JSON line with --json, as every log line then is.
		if a.log == nil {
			a.setupLogging()
		}
		a.log.Error("the metrics file was not written", "err", err)
	}
}

// redactRepo drops any user information from a repository URL: a label
// is stored and shown by every monitoring system.
func redactRepo(repo string) string {
	u, err := url.Parse(repo)
	if err != nil || u.User == nil {
		return repo
	}
	u.User = nil
	return u.String()
}
