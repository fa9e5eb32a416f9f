package main

import (
	"strings"
	"testing"
)

// What `make test` prints after the tests names each integration suite
// the harness skipped, and how to run it.
func TestReportSkipped(t *testing.T) {
	t.Setenv("PG_BINDIR", "/nonexistent")
	t.Setenv("MINIO_BIN", "/nonexistent/minio")
	t.Setenv("VERSITYGW_BIN", "/nonexistent/versitygw")
	t.Setenv("CHROMIUM_BIN", "/nonexistent/chromium")
	var b strings.Builder
	if n := report(&b, false); n != 4 {
		t.Errorf("%d suites reported skipped, want 4", n)
	}
	out := b.String()
	for _, want := range []string{"PostgreSQL integration tests: SKIPPED", "PG_BINDIR", "MinIO (S3) integration tests: SKIPPED", "MINIO_BIN",
		"versitygw (S3) integration tests: SKIPPED", "VERSITYGW_BIN",
		"Chromium (HTML report) integration tests: SKIPPED", "CHROMIUM_BIN"} {
		if !strings.Contains(out, want) {
			t.Errorf("report does not say %q:\n%s", want, out)
		}
	}
	b.Reset()
	if n := report(&b, true); n != 0 || !strings.Contains(b.String(), "FAILED") {
		t.Errorf("with CI=true: %d skipped:\n%s", n, b.String())
	}
}
