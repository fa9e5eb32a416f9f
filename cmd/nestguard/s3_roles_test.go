package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/nestguard/nestguard/internal/miniotest"
)

// rolePolicies reads the IAM policies of the S3 roles from
// docs/storage.md, for a repository at s3://bucket/prefix: the test runs
// nestguard under exactly what the documentation tells users to grant.
func rolePolicies(t *testing.T, bucket, prefix string) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "storage.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)\n#### ([a-z/ ]+)\n\n```json\n(.*?)\n```")
	out := make(map[string]string)
	for _, m := range re.FindAllStringSubmatch(string(doc), -1) {
		p := strings.ReplaceAll(m[2], "BUCKET/PREFIX/", bucket+"/"+prefix+"/")
		out[m[1]] = strings.ReplaceAll(p, "arn:aws:s3:::BUCKET\"", "arn:aws:s3:::"+bucket+"\"")
		if strings.Contains(out[m[1]], "BUCKET") || strings.Contains(out[m[1]], "PREFIX") {
			t.Fatalf("the %s policy has a BUCKET or PREFIX left:\n%s", m[1], out[m[1]])
		}
	}
	for _, role := range []string{"restore/verify reader", "backup writer", "hold officer", "key administrator", "prune/retention operator"} {
		if out[role] == "" {
			t.Fatalf("docs/storage.md has no policy for the %s role", role)
		}
	}
	return out
}

// TestS3Roles runs each command under the documented policy of its role
// (MinIO: temporary credentials restricted by a session policy), and
// checks that a role lacking a permission is refused with an error naming
// the operation, the key and the role it needs.
func TestS3Roles(t *testing.T) {
	t.Parallel()
	srv, root := s3Env(t, miniotest.MinIO, map[string]bool{"roles": true})
	policies := rolePolicies(t, "roles", "repo")
	base := newEnv(t)
	base.repo = "s3://roles/repo"
	as := func(role string) *env {
		e := *base
		e.extraEnv = srv.RoleEnv(t, policies[role])
		return &e
	}
	reader, writer, officer := as("restore/verify reader"), as("backup writer"), as("hold officer")
	keyAdmin, operator := as("key administrator"), as("prune/retention operator")
	refused := func(r result, role string, want ...string) {
		t.Helper()
		if r.code == 0 {
			t.Fatalf("succeeded without the %s role's permissions:\n%s", role, r.stdout)
		}
		for _, w := range append(want, "permission denied", "which the "+role+" role") {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("the refusal does not say %q:\n%s", w, r.stderr)
			}
		}
	}

	// init writes the config and the first key slot: the key
	// administrator's job, not the backup host's.
	refused(writer.run("init", "--object-lock", "compliance", "--min-retention", "1d"), "key administrator", "s3:PutObject", "repo/keys/")
	keyAdmin.must("init", "--object-lock", "compliance", "--min-retention", "1d")

	src := filepath.Join(base.dir, "src")
	writeTree(t, src, 31, 20, 100_000)
	refused(reader.run("backup", src), "backup writer", "s3:PutObject", "repo/data/")
	writer.backupJSON(src)
	writeTree(t, filepath.Join(src, "more"), 32, 5, 100_000)
	out := writer.must("backup", src) // extends the retention of the first backup's packs
	if !strings.Contains(out, "retention:") {
		t.Errorf("backup as backup writer reports no retention:\n%s", out)
	}
	if r := writer.run("backup", src); r.code != 0 || strings.Contains(r.stderr, "WARN") {
		t.Errorf("third backup as backup writer: exit %d, warnings:\n%s", r.code, r.stderr)
	}
	writer.must("retention", "apply")
	operator.must("retention", "apply")

	// The reader restores and verifies.
	reader.must("snapshots")
	reader.must("verify", "--read-data")
	dst := filepath.Join(base.dir, "dst")
	reader.must("restore", "latest", "--target", dst)
	compareTrees(t, src, filepath.Join(dst, strings.TrimPrefix(src, "/")))

	// forget reads the retention of the snapshot objects (the reader may,
	// for a dry run); under a compliance retention of a day the operator's
	// forget keeps every snapshot, and says until when.
	reader.must("forget", "--keep-last", "1", "--dry-run")
	if out := operator.must("forget", "--keep-last", "1"); !strings.Contains(out, "0 removed, 2 retained") || !strings.Contains(out, "Object Lock (compliance)") {
		t.Errorf("forget as prune/retention operator under retention:\n%s", out)
	}

	// Legal holds are the hold officer's: the backup writer is refused
	// before anything is recorded.
	refused(writer.run("hold", "add", "latest", "--case", "C-1", "--reason", "subpoena"), "hold officer", "s3:PutObject", "repo/holds/")
	if out := reader.must("hold", "list"); strings.Contains(out, "C-1") {
		t.Errorf("a refused hold add recorded a hold:\n%s", out)
	}
	if r := officer.run("hold", "add", "latest", "--case", "C-1", "--reason", "subpoena"); r.code != 0 || strings.Contains(r.stderr, "WARN") {
		t.Fatalf("hold add as hold officer: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	held := 0
	for _, v := range objects(t, root, "roles", "repo/data/") {
		if legalHold(t, root, "roles", v) {
			held++
		}
	}
	if held == 0 {
		t.Error("hold add as hold officer placed no legal hold")
	}
	if out := reader.must("hold", "list"); !strings.Contains(out, "C-1") {
		t.Errorf("hold list does not show the hold:\n%s", out)
	}

	// Key slots are the key administrator's.
	newPass := filepath.Join(base.dir, "newpass")
	if err := os.WriteFile(newPass, []byte("second passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused(writer.run("key", "add", "--new-password-file", newPass), "key administrator", "s3:PutObject", "repo/keys/")
	keyAdmin.must("key", "add", "--new-password-file", newPass)

	// Straight through the S3 API, the backup writer's credentials can
	// neither delete nor shorten a retention nor clear a legal hold.
	direct := srv.RoleClient(t, policies["backup writer"])
	ctx := context.Background()
	var pack objVersion
	for _, v := range objects(t, root, "roles", "repo/data/") {
		if legalHold(t, root, "roles", v) {
			pack = v
			break
		}
	}
	_, until := retainUntil(t, root, "roles", pack)
	short := time.Now().Add(time.Hour)
	for _, mode := range []types.ObjectLockRetentionMode{types.ObjectLockRetentionModeCompliance, types.ObjectLockRetentionModeGovernance} {
		if _, err := direct.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{
			Bucket: aws.String("roles"), Key: &pack.key, VersionId: &pack.id, BypassGovernanceRetention: aws.Bool(true),
			Retention: &types.ObjectLockRetention{Mode: mode, RetainUntilDate: &short},
		}); err == nil {
			t.Errorf("the backup writer shortened the retention of %s (to %s)", pack.key, mode)
		}
	}
	if _, u := retainUntil(t, root, "roles", pack); !u.Equal(until) {
		t.Errorf("retention of %s changed from %v to %v", pack.key, until, u)
	}
	// MinIO, unlike AWS, lets s3:PutObjectRetention alone shorten a
	// governance retention when the bypass header is sent: storage.md
	// says so and recommends compliance mode there. Should this start
	// failing, MinIO asks for s3:BypassGovernanceRetention as AWS does,
	// and the warning can go.
	probe := "repo/data/00/probe"
	later := time.Now().Add(2 * time.Hour)
	info, err := root.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("roles"), Key: &probe, Body: bytes.NewReader([]byte("x")),
		ObjectLockMode: types.ObjectLockModeGovernance, ObjectLockRetainUntilDate: &later,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32, // S3 wants an integrity header with a retention
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{
		Bucket: aws.String("roles"), Key: &probe, VersionId: info.VersionId, BypassGovernanceRetention: aws.Bool(true),
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeGovernance, RetainUntilDate: &short},
	}); err != nil {
		t.Errorf("MinIO now refuses the backup writer to shorten a governance retention (%v): update the note in docs/storage.md", err)
	}
	for _, in := range []s3.DeleteObjectInput{{VersionId: &pack.id, BypassGovernanceRetention: aws.Bool(true)}, {VersionId: &pack.id}, {}} {
		in.Bucket, in.Key = aws.String("roles"), &pack.key
		if _, err := direct.DeleteObject(ctx, &in); err == nil || s3Code(err) != "AccessDenied" {
			t.Errorf("the backup writer removing %s (version %q, bypass %v): %v, want AccessDenied", pack.key, aws.ToString(in.VersionId), aws.ToBool(in.BypassGovernanceRetention), err)
		}
	}
	if _, err := direct.PutObjectLegalHold(ctx, &s3.PutObjectLegalHoldInput{
		Bucket: aws.String("roles"), Key: &pack.key, VersionId: &pack.id,
		LegalHold: &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOff},
	}); err == nil {
		t.Errorf("the backup writer cleared the legal hold of %s", pack.key)
	}
	if !legalHold(t, root, "roles", pack) {
		t.Errorf("the legal hold of %s is gone", pack.key)
	}
	// Nor write a key slot or a hold record of its own.
	for _, key := range []string{"repo/keys/planted", "repo/holds/planted", "repo/config"} {
		if _, err := direct.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("roles"), Key: &key, Body: bytes.NewReader([]byte("x"))}); err == nil {
			t.Errorf("the backup writer wrote %s", key)
		}
	}

	// Releasing is the hold officer's too.
	refused(writer.run("hold", "release", "latest", "--case", "C-1", "--reason", "closed"), "hold officer", "repo/holds/")
	officer.must("hold", "release", "latest", "--case", "C-1", "--reason", "closed")
	if legalHold(t, root, "roles", pack) {
		t.Errorf("hold release as hold officer left the legal hold of %s", pack.key)
	}
	reader.must("verify")

	// WAL expiry records: prune (the operator) writes them before it
	// removes WAL, copy's destination (the backup writer) the source's;
	// the reader may not, and nobody may remove one. (The repository has
	// no WAL, so the probes, not records, are not read by verify.)
	for _, c := range []struct {
		role string
		may  bool
	}{{"prune/retention operator", true}, {"backup writer", true}, {"restore/verify reader", false}, {"hold officer", false}} {
		cl := srv.RoleClient(t, policies[c.role])
		key := "repo/expiry/probe-" + strings.ReplaceAll(strings.ReplaceAll(c.role, "/", "-"), " ", "-")
		put, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("roles"), Key: &key, Body: bytes.NewReader([]byte("x")),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
		if (err == nil) != c.may {
			t.Errorf("the %s putting %s: %v", c.role, key, err)
		}
		if err != nil {
			continue
		}
		if _, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("roles"), Key: &key, VersionId: put.VersionId}); err == nil || s3Code(err) != "AccessDenied" {
			t.Errorf("the %s removing %s: %v, want AccessDenied", c.role, key, err)
		}
	}
}
