package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nestguard/nestguard/internal/miniotest"
	"github.com/nestguard/nestguard/internal/prune"
)

// lockKeys lists the current objects under prefix.
func lockKeys(t *testing.T, cl *s3.Client, bucket, prefix string) []string {
	t.Helper()
	out, err := cl.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// TestPruneLockS3ObjectLock: on a bucket with Object Lock (compliance and
// governance) prunes of the prune/retention operator run one after the
// other, each a process of its own, without the second being refused by
// the first's kept record; the backup writer is refused, naming the
// permission; junk in locks/ stops no prune; verify, stats, copy and
// retention apply do not trip over locks/.
func TestPruneLockS3ObjectLock(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"compliance", "governance"} {
		t.Run(mode, func(t *testing.T) {
			bucket := "plock" + mode[:3]
			srv, cl := s3Env(t, miniotest.MinIO, map[string]bool{bucket: true})
			policies := rolePolicies(t, bucket, "repo")
			e := newEnv(t)
			e.repo = "s3://" + bucket + "/repo"
			operator := *e
			operator.extraEnv = append(operator.extraEnv, srv.RoleEnv(t, policies["prune/retention operator"])...)
			writer := *e
			writer.extraEnv = append(writer.extraEnv, srv.RoleEnv(t, policies["backup writer"])...)
			e.must("init", "--object-lock", mode, "--min-retention", "1h")
			src := filepath.Join(e.dir, "src")
			writeRandomFiles(t, src, 3, 200_000)
			writer.must("backup", src)

			if r := writer.run("prune", "--grace", "0"); r.code == 0 || !strings.Contains(r.stderr, "permission denied") {
				t.Errorf("prune as the backup writer: exit %d\n%s", r.code, r.stderr)
			} else {
				t.Logf("writer prune: exit %d: %s", r.code, r.stderr)
			}
			reader := *e
			reader.extraEnv = append(reader.extraEnv, srv.RoleEnv(t, policies["restore/verify reader"])...)
			for _, who := range []*env{&reader, &writer} {
				if r := who.run("prune", "--dry-run"); r.code != 0 {
					t.Errorf("prune --dry-run (no lock): exit %d\n%s", r.code, r.stderr)
				}
			}
			for i := range 3 {
				r := operator.run("prune", "--grace", "0")
				if r.code != 0 {
					t.Fatalf("prune %d in a row: exit %d\n%s%s", i+1, r.code, r.stdout, r.stderr)
				}
				// Object Lock keeps each prune's record; its end is
				// recorded beside it.
				if n := len(lockKeys(t, cl, bucket, "repo/locks/")); n != 2*(i+1) {
					t.Errorf("prune %d: %d objects under locks/, want %d (each prune's record and its release)\n%s", i+1, n, 2*(i+1), r.stderr)
				}
			}
			// A prune killed on Object Lock leaves its record, which
			// the store keeps; the next prune on this host runs (a
			// repository of its own whose retention ends in seconds, so
			// that there is something to prune).
			k := *e
			k.repo = "s3://" + bucket + "/killed"
			k.must("init", "--object-lock", mode, "--min-retention", "2s")
			for i := range 2 {
				os.MkdirAll(filepath.Join(e.dir, fmt.Sprint("k", i)), 0o755)
				writeRandom(t, filepath.Join(e.dir, fmt.Sprint("k", i), "f"), 300_000, uint64(700+i))
				k.must("backup", filepath.Join(e.dir, fmt.Sprint("k", i)))
			}
			time.Sleep(3 * time.Second)
			k.must("forget", k.snapshotIDs()[0])
			c := k.cmd("prune", "--grace", "0")
			c.Env = append(c.Env, "NESTGUARD_TEST_PRUNE_AT="+prune.PointMarked+":kill")
			if out, err := c.CombinedOutput(); err == nil {
				t.Fatalf("the prune was not killed:\n%s\n%s", out, k.must("snapshots"))
			}
			if n := len(lockKeys(t, cl, bucket, "killed/locks/")); n != 1 {
				t.Errorf("%d lock records after a killed prune, want its 1", n)
			}
			if r := k.run("prune", "--grace", "0"); r.code != 0 {
				t.Fatalf("prune after a killed one on Object Lock: exit %d\n%s", r.code, r.stderr)
			}
			k.must("verify", "--read-data")
			// Junk: a wrong name, bytes under a record's name, a "directory".
			for key, body := range map[string]string{
				"repo/locks/README":                          "junk",
				"repo/locks/" + strings.Repeat("ab", 32):     "not a sealed record",
				"repo/locks/sub/" + strings.Repeat("cd", 32): "deeper",
			} {
				if _, err := cl.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 2 {
				r := operator.run("prune", "--grace", "0")
				if r.code != 0 {
					t.Fatalf("prune beside junk in locks/ (%d): exit %d\n%s%s", i+1, r.code, r.stdout, r.stderr)
				}
				// Object Lock keeps the damaged record: the warning
				// must not say it was removed.
				if !strings.Contains(r.stderr, "damaged lock record") || strings.Contains(r.stderr, "removed") {
					t.Errorf("prune beside a damaged record on Object Lock: want a warning that does not say it was removed:\n%s", r.stderr)
				}
			}
			e.must("verify", "--read-data")
			e.must("stats")
			e.must("snapshots")
			operator.must("retention", "apply")
			dst := newEnv(t)
			dst.must("init")
			pf := filepath.Join(e.dir, "pass")
			writeFile(t, pf, e.pass, 0o600)
			dst.must("copy", "--from-repo", e.repo, "--to-repo", dst.repo, "--from-password-file", pf, "--all")
			dst.must("verify")
			t.Logf("%d objects under locks/ at the end", len(lockKeys(t, cl, bucket, "repo/locks/")))
		})
	}
}

// TestPruneLockS3Race: two prune processes started at once on S3 (MinIO,
// versitygw) never
// both run past the lock: at most both refuse, exit 1 naming the other.
func TestPruneLockS3Race(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) { pruneRace(t, k) })
}

func pruneRace(t *testing.T, k miniotest.Kind) {
	_, cl := s3Env(t, k, map[string]bool{"prace": false})
	e := newEnv(t)
	e.repo = "s3://prace/repo"
	e.must("init")
	src := filepath.Join(e.dir, "src")
	for i := range 10 {
		os.RemoveAll(src)
		writeRandomFiles(t, src, 2, 200_000)
		e.must("backup", src)
		ids := e.snapshotIDs()
		if len(ids) > 1 {
			e.must(append([]string{"forget"}, ids[:len(ids)-1]...)...)
		}
		a, b := e.cmd("prune", "--grace", "0"), e.cmd("prune", "--grace", "0")
		var ao, bo strings.Builder
		a.Stderr, b.Stderr = &ao, &bo
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		a.Wait()
		b.Wait()
		ca, cb := a.ProcessState.ExitCode(), b.ProcessState.ExitCode()
		for _, x := range []struct {
			code int
			err  string
			pid  int
		}{{ca, ao.String(), b.Process.Pid}, {cb, bo.String(), a.Process.Pid}} {
			if x.code != 0 && (x.code != 1 || !strings.Contains(x.err, "another prune is running") || !strings.Contains(x.err, fmt.Sprintf("pid %d", x.pid))) {
				t.Errorf("try %d: exit %d, want 0 or 1 naming pid %d: %s", i, x.code, x.pid, x.err)
			}
		}
		t.Logf("try %d: exits %d %d", i, ca, cb)
		if n := len(lockKeys(t, cl, "prace", "repo/locks/")); n != 0 {
			t.Errorf("try %d: %d lock records left", i, n)
		}
	}
	e.must("verify", "--read-data")
}

// TestPruneLockHugeJunk: a file under a lock record's name in locks/ that
// is larger than any object (sparse, here) stops no prune: it used to
// stop every one ("reading the prune lock records: ... is larger than").
func TestPruneLockHugeJunk(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must("init")
	src := filepath.Join(e.dir, "src")
	writeRandomFiles(t, src, 2, 100_000)
	e.must("backup", src)
	junk := filepath.Join(e.repo, "locks", strings.Repeat("34", 32))
	f, err := os.Create(junk)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(300 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := e.run("prune", "--grace", "0")
	if r.code != 0 || !strings.Contains(r.stderr, strings.Repeat("34", 32)) {
		t.Fatalf("prune beside a huge file in locks/: exit %d, want 0 with a warning naming it\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(junk); err == nil {
		t.Errorf("the huge file is left in locks/")
	}
}
