package main

// The end-to-end flows of e2e_test.go against S3: the same binary and the
// same checks, with the repository in a bucket of MinIO and of versitygw on loopback
// (internal/miniotest), plus the storage going away mid-backup.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nestguard/nestguard/internal/miniotest"
)

// s3TestEnv is an env whose repository is s3://bucket/repo on a fresh
// S3 server of kind k; the server's endpoint, CA and credentials reach
// nestguard through the environment.
func s3TestEnv(t *testing.T, k miniotest.Kind, bucket string) (*env, *miniotest.Server) {
	t.Helper()
	srv := miniotest.StartKind(t, k)
	srv.MakeBucket(t, bucket, false)
	e := newEnv(t)
	e.repo = "s3://" + bucket + "/repo"
	e.extraEnv = srv.Env()
	return e, srv
}

func TestS3BackupRestoreRoundTrip(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel() // each server kind at once
		e, _ := s3TestEnv(t, k, "roundtrip")
		src := filepath.Join(e.dir, "src")
		writeTree(t, src, 1, 200, 300_000)
		e.must("init")
		if r := e.run("init"); r.code != 1 || !strings.Contains(r.stderr, "already initialized") {
			t.Errorf("init twice: exit %d: %s", r.code, r.stderr)
		}

		threeBackups(t, e, src)
		var snaps []map[string]any
		if err := json.Unmarshal([]byte(e.must("snapshots", "--json")), &snaps); err != nil || len(snaps) != 3 {
			t.Fatalf("snapshots --json: %v, %d snapshots", err, len(snaps))
		}

		tgt := filepath.Join(e.dir, "restore")
		e.must("restore", "latest", "--target", tgt)
		compareTrees(t, src, filepath.Join(tgt, src))
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(tgt, src, "sparse.img"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Blocks*512 > 4<<20 {
			t.Errorf("sparse file restored with %d bytes allocated", st.Blocks*512)
		}
		e.must("verify", "--read-data")

		wrong := *e
		wrong.pass = "not the passphrase"
		if r := wrong.run("snapshots"); r.code != 1 || !strings.Contains(r.stderr, "wrong passphrase") {
			t.Errorf("wrong passphrase: exit %d: %s", r.code, r.stderr)
		}
	})
}

func TestS3ConcurrentBackups(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel() // each server kind at once
		e, _ := s3TestEnv(t, k, "concurrent")
		concurrentBackups(t, e)
	})
}

// TestS3StorageGoesAway stops MinIO while a backup of 300 MiB uploads:
// the backup must fail within a bounded time with a clear error, and the
// next backup after a restart must succeed, reuse what was uploaded, and
// verify and restore.
func TestS3StorageGoesAway(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel() // each server kind at once
		e, srv := s3TestEnv(t, k, "goesaway")
		src := filepath.Join(e.dir, "src")
		writeRandomFiles(t, src, 6, 50<<20)
		e.must("init")

		c := e.cmd("backup", src)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- c.Wait() }()
		// Stop the server once the first packs have landed.
		cl := srv.Client(t)
		deadline := time.Now().Add(60 * time.Second)
		for s3Count(t, cl, "goesaway", "repo/data/") < 2 {
			select {
			case err := <-exited:
				t.Fatalf("backup ended (%v) before MinIO could be stopped:\n%s", err, stderr.String())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				c.Process.Kill()
				t.Fatal("no pack uploaded within 60 s")
			}
		}
		srv.Stop(t)
		stopped := time.Now()

		select {
		case err := <-exited:
			took := time.Since(stopped)
			out := stderr.String()
			t.Logf("backup failed %v after MinIO stopped: %v\n%s", took, err, out)
			if c.ProcessState.ExitCode() != 1 {
				t.Errorf("backup exit code %d, want 1", c.ProcessState.ExitCode())
			}
			if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
				t.Error("the backup panicked")
			}
			if !strings.Contains(out, "giving up after") || !strings.Contains(out, "connection refused") {
				t.Errorf("the error does not say that the storage is unreachable and how long it was tried:\n%s", out)
			}
			if took > 60*time.Second {
				t.Errorf("the backup took %v to fail after the storage went away", took)
			}
		case <-time.After(120 * time.Second):
			c.Process.Kill()
			t.Fatalf("the backup hangs: still running 120 s after MinIO stopped\n%s", stderr.String())
		}

		srv.Restart(t)
		e.must("verify")
		v := e.backupJSON(src)
		added, total := summary(v, "data_added"), summary(v, "total_bytes")
		if added >= total {
			t.Errorf("backup after restart added %d of %d bytes: the interrupted backup's packs were not reused", added, total)
		}
		t.Logf("backup after restart added %d of %d bytes", added, total)
		e.must("verify", "--read-data")
		tgt := filepath.Join(e.dir, "restore")
		e.must("restore", "latest", "--target", tgt)
		compareTrees(t, src, filepath.Join(tgt, src))
	})
}

// writeRandomFiles writes n incompressible files of size bytes.
func writeRandomFiles(t *testing.T, dir string, n, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{7})
	b := make([]byte, size)
	for i := range n {
		rng.Read(b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("big%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// s3Count counts the objects under prefix.
func s3Count(t *testing.T, cl *s3.Client, bucket, prefix string) int {
	t.Helper()
	return len(s3Objects(t, cl, bucket, prefix))
}

// TestS3EndpointURL reaches the server through an endpoint given as a URL,
// as the AWS tools take it: --s3-endpoint https://..., its alias
// --endpoint-url, AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL. Plain HTTP
// (http://) stays refused to anything but a loopback address.
func TestS3EndpointURL(t *testing.T) {
	t.Parallel()
	e, srv := s3TestEnv(t, miniotest.MinIO, "endpointurl")
	url := "https://" + srv.Endpoint
	e.extraEnv = append(e.extraEnv, "NESTGUARD_S3_ENDPOINT=", "AWS_ENDPOINT_URL_S3=", "AWS_ENDPOINT_URL=")
	e.must("--s3-endpoint", url, "init")
	e.must("--endpoint-url", url+"/", "snapshots")
	e.must("--s3-endpoint", srv.Endpoint, "snapshots") // host:port as before

	viaEnv := *e
	viaEnv.extraEnv = append(slices.Clone(e.extraEnv), "AWS_ENDPOINT_URL="+url)
	viaEnv.must("snapshots")
	// The S3-specific variable wins over the general one.
	viaEnv.extraEnv = append(viaEnv.extraEnv, "AWS_ENDPOINT_URL=https://192.0.2.1:1", "AWS_ENDPOINT_URL_S3="+url)
	viaEnv.must("snapshots")

	if r := e.run("--s3-endpoint", "http://192.0.2.1:9000", "snapshots"); r.code != 1 || !strings.Contains(r.stderr, "only allowed for a loopback endpoint") {
		t.Errorf("http:// to a non-loopback address: exit %d: %s", r.code, r.stderr)
	}
	// Contradictory flags: a usage error (hostile-s3 L4).
	if r := e.run("--s3-endpoint", url, "--insecure-http", "snapshots"); r.code != 2 || !strings.Contains(r.stderr, "give one") {
		t.Errorf("https:// with --insecure-http: exit %d: %s", r.code, r.stderr)
	}
}

// TestS3RoleProfile backs up and lists with the credentials of a role
// profile (role_arn + source_profile holding MinIO's root keys), assumed
// at MinIO's STS API, which AWS_ENDPOINT_URL_STS points at; an SSO
// profile is refused with what to do instead.
func TestS3RoleProfile(t *testing.T) {
	t.Parallel()
	e, srv := s3TestEnv(t, miniotest.MinIO, "roleprofile")
	// MinIO's STS answers "not initialized" for a moment after its S3 API
	// is up: RoleEnv waits for it.
	srv.RoleEnv(t, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}`)
	creds, conf := filepath.Join(e.dir, "aws-credentials"), filepath.Join(e.dir, "aws-config")
	os.WriteFile(creds, []byte("[minio-root]\naws_access_key_id = "+srv.AccessKey+"\naws_secret_access_key = "+srv.SecretKey+"\n"), 0o600)
	os.WriteFile(conf, []byte(`[profile backup]
role_arn = arn:aws:iam::000000000000:role/nestguard-backup
source_profile = minio-root
duration_seconds = 900

[profile sso]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Backup
`), 0o600)
	e.extraEnv = append(e.extraEnv,
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=",
		"AWS_SHARED_CREDENTIALS_FILE="+creds, "AWS_CONFIG_FILE="+conf, "AWS_PROFILE=backup",
		"AWS_ENDPOINT_URL_STS=https://"+srv.Endpoint, "AWS_EC2_METADATA_DISABLED=true")
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "ledger.csv"), []byte("2026-12-06,42.00\n"), 0o644)
	e.must("init")
	e.must("backup", src)
	proc := *e
	proc.subprocess = true // the binary itself, with its environment
	var snaps []map[string]any
	if err := json.Unmarshal([]byte(proc.must("snapshots", "--json")), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots --json through the role: %v, %d snapshots", err, len(snaps))
	}

	sso := *e
	sso.extraEnv = append(slices.Clone(e.extraEnv), "AWS_PROFILE=sso")
	if r := sso.run("snapshots"); r.code != 1 || !strings.Contains(r.stderr, "aws configure export-credentials --profile sso") {
		t.Errorf("an SSO profile: exit %d: %s", r.code, r.stderr)
	}
}

// TestS3ForgetPrune: forget (by policy and by ID, with --prune) on a
// bucket without Object Lock works as on a local directory, and what is
// kept verifies and restores. (The stress test used to bypass forget on
// MinIO.)
func TestS3ForgetPrune(t *testing.T) {
	t.Parallel()
	e, _ := s3TestEnv(t, miniotest.MinIO, "forget")
	e.must("init")
	src := filepath.Join(e.dir, "src")
	writeTree(t, filepath.Join(src, "gone"), 71, 10, 100_000)
	first := e.backupAt(src, "2026-03-01T02:00:00Z")
	if err := os.RemoveAll(filepath.Join(src, "gone")); err != nil {
		t.Fatal(err)
	}
	writeTree(t, filepath.Join(src, "kept"), 72, 10, 100_000)
	second := e.backupAt(src, "2026-03-02T02:00:00Z")
	e.backupAt(src, "2026-03-03T02:00:00Z")

	if d := e.forgetJSON("--keep-last", "2", "--dry-run"); d.Removed != 1 || d.Kept != 2 {
		t.Errorf("forget --dry-run on S3: %+v", d)
	}
	out := e.must("forget", "--keep-last", "2", "--prune", "--grace", "0")
	if !strings.Contains(out, "1 removed") || strings.Contains(out, "deleted 0 packs") {
		t.Errorf("forget --prune on S3:\n%s", out)
	}
	if _, ok := e.snapshotTimes()[first]; ok {
		t.Errorf("snapshot %s still there", first[:8])
	}
	e.must("forget", second[:8])
	if n := len(e.snapshotTimes()); n != 1 {
		t.Errorf("%d snapshots left, want 1", n)
	}
	e.must("verify", "--read-data")
	tgt := filepath.Join(e.dir, "restore")
	e.must("restore", "latest", "--target", tgt)
	compareTrees(t, src, filepath.Join(tgt, src))
}
