// Command testdeps says which integration test suites the tests just run
// had to skip, and how to run them. `make test` runs it after `go test`,
// whose output shows skipped tests only with -v; it asks the same
// functions the tests' harnesses use (pgtest.BinDir, miniotest.BinaryOf),
// so what it says is what the tests did.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/nestguard/nestguard/internal/chromiumtest"
	"github.com/nestguard/nestguard/internal/miniotest"
	"github.com/nestguard/nestguard/internal/pgtest"
)

func main() {
	report(os.Stdout, os.Getenv("CI") == "true")
}

// report prints one line per integration suite and returns how many were
// skipped. In CI a missing dependency fails the tests instead of skipping
// them (see pgtest.Require and miniotest.Require).
func report(w io.Writer, ci bool) int {
	suites := []struct{ name, found, how string }{
		{"PostgreSQL", pgtest.BinDir(), "install postgresql (.ci/install-postgres.sh) or set PG_BINDIR"},
		{"MinIO (S3)", miniotest.Binary(), "run .ci/install-minio.sh or set MINIO_BIN"},
		{"versitygw (S3)", miniotest.BinaryOf(miniotest.Versity), "run .ci/install-versitygw.sh or set VERSITYGW_BIN"},
		{"Chromium (HTML report)", chromiumtest.Binary(), chromiumtest.How},
	}
	skipped := 0
	for _, s := range suites {
		switch {
		case s.found != "":
			fmt.Fprintf(w, "%s integration tests: run (%s)\n", s.name, s.found)
		case ci:
			fmt.Fprintf(w, "%s integration tests: FAILED, not skipped, as CI=true: %s\n", s.name, s.how)
		default:
			skipped++
			fmt.Fprintf(w, "%s integration tests: SKIPPED, not found: %s\n", s.name, s.how)
		}
	}
	return skipped
}
