package s3

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileCreds: a profile's keys come from the shared credentials
// file, else from the config file's [profile name] section.
func TestProfileCreds(t *testing.T) {
	dir := t.TempDir()
	creds, conf := filepath.Join(dir, "credentials"), filepath.Join(dir, "config")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id = d\naws_secret_access_key = ds\n\n# comment\n[ backup ]\nAWS_ACCESS_KEY_ID=b\naws_secret_access_key = bs \naws_session_token = bt\n"), 0o600)
	os.WriteFile(conf, []byte("[default]\nregion = x\n[profile other]\naws_access_key_id = o\naws_secret_access_key = os\n[other]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n"), 0o600)
	for profile, want := range map[string]string{"": "d ds ", "backup": "b bs bt", "other": "o os "} {
		env := map[string]string{"AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_CONFIG_FILE": conf, "AWS_PROFILE": profile}
		p, err := testChain(env).profileCreds(context.Background())
		if err != nil {
			t.Fatalf("profile %q: %v", profile, err)
		}
		got := ""
		if p != nil {
			v, err := p.Retrieve(context.Background())
			if err != nil {
				t.Fatalf("profile %q: %v", profile, err)
			}
			got = v.AccessKeyID + " " + v.SecretAccessKey + " " + v.SessionToken
		}
		if got != want {
			t.Errorf("profile %q: credentials %q, want %q", profile, got, want)
		}
	}
}

// TestProfileMissing: AWS_PROFILE naming a profile that exists in
// neither file is an error that names it; without AWS_PROFILE, no
// default profile is no credentials from the files (the chain goes on).
func TestProfileMissing(t *testing.T) {
	dir := t.TempDir()
	creds, conf := filepath.Join(dir, "credentials"), filepath.Join(dir, "config")
	os.WriteFile(creds, []byte("[backup]\naws_access_key_id = b\naws_secret_access_key = bs\n"), 0o600)
	env := map[string]string{"AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_CONFIG_FILE": conf, "AWS_PROFILE": "bakcup"}
	p, err := testChain(env).profileCreds(context.Background())
	if err == nil || p != nil || !strings.Contains(err.Error(), "AWS_PROFILE=bakcup: no such profile") {
		t.Errorf("a missing AWS_PROFILE: %v, %v", p, err)
	}
	delete(env, "AWS_PROFILE")
	if p, err := testChain(env).profileCreds(context.Background()); err != nil || p != nil {
		t.Errorf("no default profile: %v, %v; want none and no error", p, err)
	}
}

// TestProfilePartialKeys: a profile with one key of its pair (the other
// misspelt or missing) is an error naming the profile and the missing
// key, never a turn to the next source of credentials; as a source
// profile too. The values are not repeated.
func TestProfilePartialKeys(t *testing.T) {
	dir := t.TempDir()
	creds, conf := filepath.Join(dir, "credentials"), filepath.Join(dir, "config")
	os.WriteFile(creds, []byte("[prod]\naws_access_key_id = AKIAPRODKEY\naws_secrt_access_key = typo-secret\n"+
		"[secretonly]\naws_secret_access_key = only-secret\n"+
		"[rolefromprod]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = prod\n"), 0o600)
	for profile, missing := range map[string]string{"prod": "aws_secret_access_key is missing", "secretonly": "aws_access_key_id is missing", "rolefromprod": "aws_secret_access_key is missing"} {
		env := map[string]string{"AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_CONFIG_FILE": conf, "AWS_PROFILE": profile}
		p, err := testChain(env).profileCreds(context.Background())
		if err == nil || p != nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "partial credentials") || !strings.Contains(err.Error(), `"`+profile+`"`) {
			t.Errorf("profile %s with partial keys: %v, %v; want an error naming it and saying %q", profile, p, err, missing)
		}
		if err != nil && (strings.Contains(err.Error(), "AKIAPRODKEY") || strings.Contains(err.Error(), "typo-secret") || strings.Contains(err.Error(), "only-secret")) {
			t.Errorf("the error repeats a key: %v", err)
		}
	}
	// Nor does the whole chain go on to a container's credentials.
	env := map[string]string{"AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_CONFIG_FILE": conf, "AWS_PROFILE": "prod",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/creds"}
	if p, _, err := defaultChain(context.Background(), Config{LookupEnv: testChain(env).lookup}); err == nil || p != nil {
		t.Errorf("the chain with AWS_PROFILE=prod (partial keys): %v, %v; want an error", p, err)
	}
}

// TestProfileHome: ~/.aws is under HOME as the chain's lookup finds it,
// not the process's HOME; without one, under the account's home
// directory, as the SDK does.
func TestProfileHome(t *testing.T) {
	home, other := t.TempDir(), t.TempDir()
	for dir, id := range map[string]string{home: "from-lookup", other: "from-process"} {
		os.MkdirAll(filepath.Join(dir, ".aws"), 0o700)
		os.WriteFile(filepath.Join(dir, ".aws", "credentials"), []byte("[default]\naws_access_key_id = "+id+"\naws_secret_access_key = s\n"), 0o600)
	}
	t.Setenv("HOME", other)
	t.Setenv("USERPROFILE", other)
	env := map[string]string{"HOME": home, "USERPROFILE": home, "home": home}
	p, err := testChain(env).profileCreds(context.Background())
	if err != nil || p == nil {
		t.Fatalf("profileCreds: %v, %v", p, err)
	}
	v, err := p.Retrieve(context.Background())
	if err != nil || v.AccessKeyID != "from-lookup" {
		t.Errorf("credentials %q, %v; want those of the lookup's HOME", v.AccessKeyID, err)
	}

	want := ""
	if u, err := user.Current(); err == nil {
		want = u.HomeDir
	}
	if got := homeDir(func(string) string { return "" }); got != want {
		t.Errorf("homeDir without HOME: %q, want the account's home directory %q", got, want)
	}
}

// testChain is a chain whose lookup is env.
func testChain(env map[string]string) chain {
	return chain{lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
}

// TestNamedProfileOnly: Config.Profile (copy's --from-s3-profile, the
// global --s3-profile) is the one source of credentials, as the AWS CLI
// takes --profile: the AWS variables and AWS_PROFILE, which may be the
// other repository's, are not read. A profile that does not exist, has
// one key of its pair or configures no credentials is an error naming it
// and where it was given, never a turn to the rest of the chain.
func TestNamedProfileOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	creds, conf := filepath.Join(dir, "credentials"), filepath.Join(dir, "config")
	os.WriteFile(creds, []byte("[src]\naws_access_key_id = AKIASOURCEKEY1234\naws_secret_access_key = source-secret\n"+
		"[other]\naws_access_key_id = other\naws_secret_access_key = other-secret\n"+
		"[half]\naws_access_key_id = AKIAHALFKEY\naws_secert_access_key = half-secret\n"), 0o600)
	os.WriteFile(conf, []byte("[profile regiononly]\nregion = eu-central-1\n"), 0o600)
	env := map[string]string{"AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_CONFIG_FILE": conf,
		"AWS_ACCESS_KEY_ID": "env-key", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_PROFILE": "other",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/creds"}
	cfg := Config{LookupEnv: testChain(env).lookup, Profile: "src", ProfileOrigin: "--from-s3-profile"}

	p, who, err := credentialChain(ctx, cfg)
	if err != nil {
		t.Fatalf("profile src: %v", err)
	}
	if v, err := p.Retrieve(ctx); err != nil || v.AccessKeyID != "AKIASOURCEKEY1234" {
		t.Errorf("profile src: credentials %q, %v; want the profile's, not the environment's or AWS_PROFILE's", v.AccessKeyID, err)
	}
	if want := `profile "src" (--from-s3-profile), access key ID ****1234`; who != want {
		t.Errorf("identity %q, want %q", who, want)
	}

	for profile, want := range map[string]string{
		"nosuch":     `profile "nosuch" (--from-s3-profile): no such profile in ` + creds,
		"half":       `profile "half" has partial credentials: aws_access_key_id is set, aws_secret_access_key is missing`,
		"regiononly": `profile "regiononly" (--from-s3-profile) has no credentials`,
	} {
		cfg.Profile = profile
		p, _, err := credentialChain(ctx, cfg)
		if err == nil || p != nil || !strings.Contains(err.Error(), want) {
			t.Errorf("profile %s: %v, %v; want an error saying %q", profile, p, err, want)
		}
		for _, secret := range []string{"half-secret", "env-secret", "source-secret", "AKIAHALFKEY"} {
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("profile %s: the error repeats %q: %v", profile, secret, err)
			}
		}
	}

	// Without Config.Profile the chain is as before: the variables first,
	// and what they are is said.
	_, who, err = credentialChain(ctx, Config{LookupEnv: testChain(env).lookup})
	if err != nil || !strings.Contains(who, "AWS_ACCESS_KEY_ID") {
		t.Errorf("the whole chain: %q, %v; want the AWS variables", who, err)
	}
	delete(env, "AWS_ACCESS_KEY_ID")
	_, who, err = credentialChain(ctx, Config{LookupEnv: testChain(env).lookup})
	if err != nil || who != `profile "other" (AWS_PROFILE)` {
		t.Errorf("the whole chain without the variables: %q, %v; want AWS_PROFILE's", who, err)
	}
}
