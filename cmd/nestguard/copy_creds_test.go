package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/miniotest"
)

// TestCopyS3ProfilesPerSide copies between two S3 stores with different
// keys, MinIO (the source) and versitygw (the destination), as a copy
// into another account does (found by a hostile test: the source could
// only use the destination's credentials). --from-s3-profile gives the
// source its own profile while the destination keeps the AWS variables;
// --s3-profile (and NESTGUARD_FROM_S3_PROFILE) make both sides profiles,
// whatever the variables hold. The copy verifies and restores byte for
// byte; a wrong, missing or half-filled profile fails naming the side and
// the profile, never a secret; and the source needs only the documented
// copy source role (read and list).
func TestCopyS3ProfilesPerSide(t *testing.T) {
	t.Parallel()
	mio := miniotest.StartKind(t, miniotest.MinIO)
	vgw := miniotest.StartKind(t, miniotest.Versity)
	mio.MakeBucket(t, "euro", true) // a WORM source, as a regulated one is
	vgw.MakeBucket(t, "usa", false)
	if mio.SecretKey == vgw.SecretKey {
		t.Fatal("the two stores have the same keys")
	}

	dir := t.TempDir()
	// One bundle with both private CAs: --ca-cert serves both sides.
	var bundle []byte
	for _, f := range []string{mio.CACert, vgw.CACert} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, bundle, 0o600)

	// The source's read-only identity: MinIO credentials restricted to
	// the copy source policy of docs/storage.md.
	policy := rolePolicies(t, "euro", "prod")["copy source"]
	if policy == "" {
		t.Fatal("docs/storage.md has no policy for the copy source role")
	}
	ro := map[string]string{}
	for _, kv := range mio.RoleEnv(t, policy) {
		k, v, _ := strings.Cut(kv, "=")
		ro[k] = v
	}
	creds := filepath.Join(dir, "credentials")
	os.WriteFile(creds, fmt.Appendf(nil, `[eu-reader]
aws_access_key_id = %[1]s
aws_secret_access_key = %[2]s

[eu-readonly]
aws_access_key_id = %[5]s
aws_secret_access_key = %[6]s
aws_session_token = %[7]s

[us-writer]
aws_access_key_id = %[3]s
aws_secret_access_key = %[4]s

# the destination's keys, which MinIO does not know
[eu-wrong]
aws_access_key_id = %[3]s
aws_secret_access_key = %[4]s

[eu-half]
aws_access_key_id = %[1]s
aws_secret_acess_key = %[2]s
`, mio.AccessKey, mio.SecretKey, vgw.AccessKey, vgw.SecretKey,
		ro["AWS_ACCESS_KEY_ID"], ro["AWS_SECRET_ACCESS_KEY"], ro["AWS_SESSION_TOKEN"]), 0o600)
	awsFiles := []string{"AWS_SHARED_CREDENTIALS_FILE=" + creds, "AWS_CONFIG_FILE=" + filepath.Join(dir, "no-config"),
		"AWS_PROFILE=", "AWS_EC2_METADATA_DISABLED=true", "NESTGUARD_CA_CERT=" + caFile}

	src := newEnv(t)
	src.repo = "s3://euro/prod"
	src.extraEnv = append(mio.Env(), awsFiles...)
	src.must("init", "--object-lock", "governance", "--min-retention", "1d")
	data := filepath.Join(src.dir, "data")
	writeTree(t, data, 71, 40, 200_000)
	src.must("backup", data)

	// The destination's keys in the AWS variables, as on its backup host.
	dst := newEnv(t)
	dst.repo = "s3://usa/prod"
	dst.extraEnv = append(vgw.Env(), awsFiles...)
	dst.must("init")
	dst.extraEnv = append(dst.extraEnv, "NESTGUARD_FROM_PASSWORD="+src.pass)
	from := []string{"copy", "--from-repo", src.repo, "--from-s3-endpoint", "https://" + mio.Endpoint, "--all"}

	noSecret := func(r result) {
		t.Helper()
		for _, s := range []string{mio.SecretKey, vgw.SecretKey, ro["AWS_SECRET_ACCESS_KEY"], ro["AWS_SESSION_TOKEN"]} {
			if strings.Contains(r.stderr+r.stdout, s) {
				t.Errorf("the output holds a secret:\n%s", r.stderr)
			}
		}
	}
	fails := func(r result, want ...string) {
		t.Helper()
		if r.code != 1 {
			t.Errorf("exit %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("the error does not say %q:\n%s", w, r.stderr)
			}
		}
		noSecret(r)
	}

	// Without a source profile the source gets the destination's keys.
	fails(dst.run(from...), "source s3://euro/prod", "check the credentials (the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables")

	r := dst.run(append(from, "--from-s3-profile", "eu-reader", "--json")...)
	if r.code != 0 {
		t.Fatalf("copy with --from-s3-profile: exit %d\n%s", r.code, r.stderr)
	}
	noSecret(r)
	var res map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res["copied"].([]any)) != 1 {
		t.Fatalf("copy: %v %v", res, err)
	}
	dst.must("verify", "--read-data")
	tgt := filepath.Join(dst.dir, "restore")
	dst.must("restore", "latest", "--target", tgt)
	compareTrees(t, data, filepath.Join(tgt, data))

	// A wrong, a missing, a half-filled source profile.
	fails(dst.run(append(from, "--from-s3-profile", "eu-wrong")...),
		"source s3://euro/prod", `check the credentials (profile "eu-wrong" (--from-s3-profile), access key ID ****`+vgw.AccessKey[len(vgw.AccessKey)-4:])
	fails(dst.run(append(from, "--from-s3-profile", "eu-nosuch")...),
		"source s3://euro/prod", `profile "eu-nosuch" (--from-s3-profile): no such profile in `+creds)
	fails(dst.run(append(from, "--from-s3-profile", "eu-half")...),
		"source s3://euro/prod", `profile "eu-half" has partial credentials: aws_access_key_id is set, aws_secret_access_key is missing`)

	// Both sides from profiles, the variables holding keys neither store
	// knows: a named profile is the only source, as with the AWS CLI.
	writeTree(t, filepath.Join(data, "later"), 72, 10, 200_000)
	src.must("backup", data)
	both := *dst
	both.extraEnv = append(slices.Clone(dst.extraEnv), "AWS_ACCESS_KEY_ID=AKIANOBODYKNOWS", "AWS_SECRET_ACCESS_KEY=nobody",
		"NESTGUARD_FROM_S3_PROFILE=eu-reader", "NESTGUARD_S3_PROFILE=us-writer")
	if out := both.must(from...); !strings.Contains(out, "1 copied, 1 already there") {
		t.Errorf("copy with both profiles:\n%s", out)
	}
	both.must("verify", "--read-data")
	tgt = filepath.Join(dst.dir, "restore2")
	both.must("restore", "latest", "--target", tgt)
	compareTrees(t, data, filepath.Join(tgt, data))
	// The destination's profile wrong: the destination is named.
	fails(both.run(append(from, "--s3-profile", "eu-reader")...),
		"destination s3://usa/prod", `profile "eu-reader" (--s3-profile)`)

	// The source's identity may only read and list it.
	writeTree(t, filepath.Join(data, "latest"), 73, 5, 200_000)
	src.must("backup", data)
	r = dst.run(append(from, "--from-s3-profile", "eu-readonly")...)
	if r.code != 0 || !strings.Contains(r.stdout, "1 copied, 2 already there") {
		t.Errorf("copy with the copy source role: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// It may not append to the source's audit log, and says so (the
	// destination's records the copy).
	if !strings.Contains(r.stderr, "audit: s3://euro/prod refuses writes, so this copy is not recorded in its audit log") {
		t.Errorf("copy with the copy source role does not say that the source's audit log does not record it:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
	}
	dst.must("verify", "--read-data")
}

// TestS3ProfileOrigin: an S3 profile's errors say where it was chosen:
// the flag, its variable, or the config file (before any request).
func TestS3ProfileOrigin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.repo = "s3://bucket/prod"
	conf := filepath.Join(e.dir, "nestguard.toml")
	os.WriteFile(conf, []byte("s3-profile = \"in-file\"\n[copy]\nfrom-s3-profile = \"src-in-file\"\n"), 0o600)
	creds := filepath.Join(e.dir, "credentials")
	os.WriteFile(creds, []byte("[other]\naws_access_key_id = a\naws_secret_access_key = b\n"), 0o600)
	e.extraEnv = append(e.extraEnv, "NESTGUARD_S3_ENDPOINT=127.0.0.1:1", "AWS_SHARED_CREDENTIALS_FILE="+creds,
		"AWS_CONFIG_FILE="+filepath.Join(e.dir, "no-config"), "AWS_ACCESS_KEY_ID=a", "AWS_SECRET_ACCESS_KEY=b")
	viaEnv := *e
	viaEnv.extraEnv = append(slices.Clone(e.extraEnv), "NESTGUARD_S3_PROFILE=in-env", "NESTGUARD_FROM_S3_PROFILE=src-in-env", "NESTGUARD_FROM_PASSWORD=x")
	for _, c := range []struct {
		e    *env
		args []string
		want string
	}{
		{e, []string{"--s3-profile", "on-line", "snapshots"}, `profile "on-line" (--s3-profile): no such profile`},
		{&viaEnv, []string{"snapshots"}, `profile "in-env" (NESTGUARD_S3_PROFILE): no such profile`},
		{e, []string{"--config", conf, "snapshots"}, `profile "in-file" (s3-profile in ` + conf + `): no such profile`},
		{&viaEnv, []string{"copy", "--from-repo", "s3://bucket/src", "--all"}, `source s3://bucket/src: s3://bucket/src: getting S3 credentials: profile "src-in-env" (NESTGUARD_FROM_S3_PROFILE): no such profile`},
		{e, []string{"--config", conf, "copy", "--from-repo", "s3://bucket/src", "--all", "--from-s3-profile", "src-on-line"}, `profile "src-on-line" (--from-s3-profile): no such profile`},
	} {
		if r := c.e.run(c.args...); r.code != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: exit %d, want 1 and %q:\n%s", strings.Join(c.args, " "), r.code, c.want, r.stderr)
		}
	}
}
