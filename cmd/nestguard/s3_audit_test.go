package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/miniotest"
)

// TestS3AuditConcurrentAndCopy: on each S3 server, backups run at once as
// processes each get their record in without forking the log (entries
// are saved create-if-absent, If-None-Match), the log verifies with the
// verifier key alone, and a copy from a local repository into the bucket
// carries the source's log, which verifies there with the source's key
// against a checkpoint exported from the source.
func TestS3AuditConcurrentAndCopy(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel()
		e, _ := s3TestEnv(t, k, "auditlog")
		e.subprocess = true
		e.must("init")
		const n = 4
		backupDirsAtOnce(t, e, n)
		vkey := strings.TrimSpace(e.must("audit", "key"))
		aud := e.noPassphrase()
		if out := aud.must("audit", "verify", "--key", vkey); !strings.Contains(out, fmt.Sprintf("%d records in %d entries", n+1, n+1)) {
			t.Errorf("audit verify after %d concurrent backups:\n%s", n, out)
		}

		src := newEnv(t)
		src.must("init")
		data := filepath.Join(src.dir, "data")
		os.MkdirAll(data, 0o755)
		writeFile(t, filepath.Join(data, "f"), "copied", 0o644)
		src.must("backup", data)
		skey := strings.TrimSpace(src.must("audit", "key"))
		cp := filepath.Join(src.dir, "src.cp")
		writeFile(t, cp, src.must("audit", "checkpoint"), 0o644)
		dst := *e
		dst.extraEnv = append(append([]string{}, e.extraEnv...), "NESTGUARD_FROM_PASSWORD="+src.pass)
		dst.must("copy", "--from-repo", src.repo, "--all")
		out := aud.must("audit", "verify", "--key", skey, "--key", vkey, "--checkpoint", cp)
		if !strings.Contains(out, "2 records in 2 entries") || !strings.Contains(out, "the log extends the 1 exported checkpoints") {
			t.Errorf("audit verify of the copied log in the bucket:\n%s", out)
		}
	})
}
