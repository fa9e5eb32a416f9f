package s3

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/miniotest"
)

// fakeSTS answers AssumeRole with credentials named after the role
// ("key-<role name>"), and records each request's form and the access
// key that signed it.
type fakeSTS struct {
	mu    sync.Mutex
	calls []stsCall
}

type stsCall struct {
	form   map[string]string
	signer string
	region string
}

var credentialRE = regexp.MustCompile(`Credential=([^/]+)/[0-9]+/([^/]+)/sts/`)

func (f *fakeSTS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || r.PostForm.Get("Action") != "AssumeRole" {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	c := stsCall{form: map[string]string{}}
	for k := range r.PostForm {
		c.form[k] = r.PostForm.Get(k)
	}
	if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		c.signer, c.region = m[1], m[2]
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	role := c.form["RoleArn"][strings.LastIndex(c.form["RoleArn"], "/")+1:]
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<Credentials><AccessKeyId>key-%s</AccessKeyId><SecretAccessKey>secret-%s</SecretAccessKey><SessionToken>token-%s</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>%s/s</Arn><AssumedRoleId>id:s</AssumedRoleId></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>`,
		role, role, role, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), c.form["RoleArn"])
}

func (f *fakeSTS) take() []stsCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// TestRoleProfiles: a profile with role_arn assumes the role at STS
// (AWS_ENDPOINT_URL_STS, here a fake on loopback) with its source's
// credentials (keys, credential_process, another role, itself, the
// environment), and external_id, role_session_name and duration_seconds;
// loops of source profiles, SSO and broken settings are clear errors.
func TestRoleProfiles(t *testing.T) {
	sts := &fakeSTS{}
	srv := httptest.NewServer(sts)
	defer srv.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "config")
	process := `sh -c 'echo {\"Version\":1,\"AccessKeyId\":\"key-process\",\"SecretAccessKey\":\"s\"}'`
	os.WriteFile(conf, []byte(`
[profile keys]
aws_access_key_id = key-static
aws_secret_access_key = s

[profile process]
credential_process = `+process+`

[profile backup]
role_arn = arn:aws:iam::123456789012:role/backup
source_profile = keys
external_id = ext-42
role_session_name = nightly
duration_seconds = 3600
region = eu-west-3
s3 =
  addressing_style = path

[profile viaprocess]
role_arn = arn:aws:iam::123456789012:role/viaprocess
source_profile = process

[profile chained]
role_arn = arn:aws:iam::123456789012:role/chained
source_profile = backup

[profile self]
role_arn = arn:aws:iam::123456789012:role/self
source_profile = self
aws_access_key_id = key-self
aws_secret_access_key = s

[profile fromenv]
role_arn = arn:aws:iam::123456789012:role/fromenv
credential_source = Environment

[profile loop1]
role_arn = arn:aws:iam::123456789012:role/loop1
source_profile = loop2

[profile loop2]
role_arn = arn:aws:iam::123456789012:role/loop2
source_profile = loop1

[profile loopself]
role_arn = arn:aws:iam::123456789012:role/loopself
source_profile = loopself

[profile into-loop]
role_arn = arn:aws:iam::123456789012:role/into
source_profile = loop1

[profile missing-source]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = nowhere

[profile no-source]
role_arn = arn:aws:iam::123456789012:role/x

[profile both-sources]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = keys
credential_source = Environment

[profile empty-source]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = regiononly

[profile no-role]
source_profile = keys

[profile regiononly]
region = eu-west-1

[profile bad-duration]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = keys
duration_seconds = 60

[profile bad-source]
role_arn = arn:aws:iam::123456789012:role/x
credential_source = Laptop

[profile sso]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Backup

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = eu-west-1

[profile sso-source]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = sso

[profile mfa]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = keys
mfa_serial = arn:aws:iam::123456789012:mfa/me
`), 0o600)
	base := map[string]string{
		"HOME":                        dir,
		"AWS_CONFIG_FILE":             conf,
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"),
		"AWS_ENDPOINT_URL":            "https://192.0.2.1:1", // AWS_ENDPOINT_URL_STS wins
		"AWS_ENDPOINT_URL_STS":        srv.URL,
	}
	resolve := func(profile string, extra ...string) (string, error) {
		env := map[string]string{"AWS_PROFILE": profile}
		for k, v := range base {
			env[k] = v
		}
		for i := 0; i < len(extra); i += 2 {
			env[extra[i]] = extra[i+1]
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p, err := testChain(env).profileCreds(ctx)
		if err != nil || p == nil {
			return "", err
		}
		v, err := p.Retrieve(ctx)
		return v.AccessKeyID + " " + v.SessionToken, err
	}

	for _, c := range []struct {
		profile string
		extra   []string
		want    string
		calls   []string // signer > role, per AssumeRole
	}{
		{"backup", nil, "key-backup token-backup", []string{"key-static > backup"}},
		{"viaprocess", nil, "key-viaprocess token-viaprocess", []string{"key-process > viaprocess"}},
		{"chained", nil, "key-chained token-chained", []string{"key-static > backup", "key-backup > chained"}},
		{"self", nil, "key-self token-self", []string{"key-self > self"}},
		{"fromenv", []string{"AWS_ACCESS_KEY_ID", "key-env", "AWS_SECRET_ACCESS_KEY", "s"}, "key-fromenv token-fromenv", []string{"key-env > fromenv"}},
		{"regiononly", nil, "", nil}, // no credentials: the chain goes on
	} {
		got, err := resolve(c.profile, c.extra...)
		if err != nil || got != c.want {
			t.Errorf("profile %s: %q, %v; want %q", c.profile, got, err, c.want)
		}
		calls := sts.take()
		var roles []string
		for _, call := range calls {
			roles = append(roles, call.signer+" > "+call.form["RoleArn"][strings.LastIndex(call.form["RoleArn"], "/")+1:])
		}
		if fmt.Sprint(roles) != fmt.Sprint(c.calls) {
			t.Errorf("profile %s: AssumeRole calls %q, want %q", c.profile, roles, c.calls)
		}
		if c.profile == "backup" && len(calls) == 1 {
			f := calls[0].form
			if f["ExternalId"] != "ext-42" || f["RoleSessionName"] != "nightly" || f["DurationSeconds"] != "3600" || calls[0].region != "eu-west-3" {
				t.Errorf("profile backup: AssumeRole with %v in region %s, want external_id, role_session_name, duration_seconds and region of the profile", f, calls[0].region)
			}
		}
		if c.profile == "viaprocess" && len(calls) == 1 && !strings.HasPrefix(calls[0].form["RoleSessionName"], "nestguard-") {
			t.Errorf("profile viaprocess: session name %q, want nestguard-...", calls[0].form["RoleSessionName"])
		}
	}

	for profile, want := range map[string]string{
		"loop1":          "source_profile loop loop1 -> loop2 -> loop1",
		"into-loop":      "source_profile loop into-loop -> loop1 -> loop2 -> loop1",
		"loopself":       "source_profile loop loopself -> loopself",
		"missing-source": `source_profile "nowhere" (of profile "missing-source") does not exist`,
		"no-source":      "neither source_profile nor credential_source",
		"no-role":        "no role_arn",
		"both-sources":   "both source_profile and credential_source",
		"empty-source":   `source_profile "regiononly" (of profile "empty-source") has no credentials`,
		"bad-duration":   `duration_seconds "60"`,
		"bad-source":     `unknown credential_source "Laptop"`,
		"fromenv":        "credential_source Environment, and AWS_ACCESS_KEY_ID",
		"sso":            "aws configure export-credentials --profile sso",
		"sso-source":     "IAM Identity Center",
		"mfa":            "mfa_serial",
	} {
		got, err := resolve(profile)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), conf) {
			t.Errorf("profile %s: %q, %v; want an error naming the files and saying %q", profile, got, err, want)
		}
		if calls := sts.take(); len(calls) != 0 {
			t.Errorf("profile %s: %d calls to STS, want none", profile, len(calls))
		}
	}
}

// TestRoleProfileMinIO backs up and lists through a role profile whose
// source profile holds MinIO's root keys: the role is assumed at MinIO's
// STS API (AWS_ENDPOINT_URL_STS, over TLS with the test CA), and the
// repository is reached with the role's temporary credentials.
func TestRoleProfileMinIO(t *testing.T) {
	t.Parallel()
	s := startServer(t, miniotest.MinIO)
	// MinIO's IAM, and so its STS, starts after its S3 API: RoleEnv waits.
	s.RoleEnv(t, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}`)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "credentials"), []byte("[minio-root]\naws_access_key_id = "+s.AccessKey+"\naws_secret_access_key = "+s.SecretKey+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "config"), []byte(`[profile backup]
role_arn = arn:aws:iam::000000000000:role/nestguard-backup
source_profile = minio-root
role_session_name = nestguard-test
duration_seconds = 900
`), 0o600)
	env := map[string]string{
		"HOME":                        dir,
		"AWS_PROFILE":                 "backup",
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_ENDPOINT_URL_STS":        "https://" + s.Endpoint,
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
	cfg := s.config(plainBucket)
	cfg.Creds = nil
	cfg.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx := context.Background()
	be, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New with a role profile: %v", err)
	}
	v, err := be.client.Options().Credentials.Retrieve(ctx)
	if err != nil || v.SessionToken == "" || v.AccessKeyID == s.AccessKey {
		t.Fatalf("credentials %q (session token set: %v), %v; want the role's temporary ones", v.AccessKeyID, v.SessionToken != "", err)
	}
	h := backend.Handle{Type: backend.SnapshotFile, Name: fmt.Sprintf("%064x", 7)}
	mustSave(t, be, h, []byte("snapshot"))
	var names []string
	if err := be.List(ctx, backend.SnapshotFile, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != h.Name {
		t.Errorf("List through the role: %q, want %q", names, h.Name)
	}

	// STS refusing the source's keys is an error naming the profile.
	os.WriteFile(filepath.Join(dir, "credentials"), []byte("[minio-root]\naws_access_key_id = "+s.AccessKey+"\naws_secret_access_key = wrong-secret\n"), 0o600)
	_, err = New(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "no S3 credentials") || !strings.Contains(err.Error(), `of profile "backup"`) || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("New with a source profile STS refuses: %v", err)
	}
}

// A credential_process whose output the SDK cannot take (an Expiration in
// another format, another Version, cut short) fails without its output
// in the error: it holds the secret access key and the session token
// (the SDK's error quoted it whole; found by a hostile test).
func TestCredentialProcessOutputNotInErrors(t *testing.T) {
	const secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYLEAKEDSECRET"
	dir := t.TempDir()
	for i, out := range []string{
		`{"Version": 1, "AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "` + secret + `", "SessionToken": "tok", "Expiration": "2030-01-01 00:00:00"}`,
		`{"Version": "1", "AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "` + secret + `"}`,
		`{"Version": 1, "AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "` + secret + `"`,
	} {
		script := filepath.Join(dir, fmt.Sprintf("p%d.sh", i))
		os.WriteFile(script, []byte("#!/bin/sh\ncat <<'EOF'\n"+out+"\nEOF\n"), 0o700)
		conf := filepath.Join(dir, fmt.Sprintf("config%d", i))
		os.WriteFile(conf, []byte("[profile p]\ncredential_process = "+script+"\n"), 0o600)
		env := map[string]string{"AWS_PROFILE": "p", "AWS_CONFIG_FILE": conf, "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none")}
		ctx := context.Background()
		p, err := testChain(env).profileCreds(ctx)
		if err != nil || p == nil {
			t.Fatalf("profile p: %v", err)
		}
		_, err = p.Retrieve(ctx)
		if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), `credential_process of profile "p"`) {
			t.Errorf("output %d: %v", i, err)
		}
	}
}
