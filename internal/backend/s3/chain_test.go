package s3

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestProfileCreds: a profile's keys come from the shared credentials
// file, else from the config file's [profile name] section.
func TestProfileCreds(t *testing.T) {
	dir := t.TempDir()
	creds, conf := filepath.Join(dir, "credentials"), filepath.Join(dir, "config")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id = d\naws_secret_access_key = ds\n\n# comment\n[ backup ]\nAWS_ACCESS_KEY_ID=b\naws_secret_access_key = bs \naws_session_token = bt\n"), 0o600)
	os.WriteFile(conf, []byte("[default]\nregion = x\n[profile other]\naws_access_key_id = o\naws_secret_access_key = os\n[other]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n"), 0o600)
	for profile, want := range map[string]string{"": "d ds ", "backup": "b bs bt", "other": "o os ", "missing": ""} {
		env := map[string]string{"AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_CONFIG_FILE": conf, "AWS_PROFILE": profile}
		p, err := profileCreds(func(k string) string { return env[k] })
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
