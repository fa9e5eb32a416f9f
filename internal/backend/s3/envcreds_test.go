package s3

import (
	"context"
	"testing"
)

// TestCredentialsFromLookupEnv: the chain reads the AWS variables where
// Config.LookupEnv finds them, not from the process, with the aliases the
// AWS tools take.
func TestCredentialsFromLookupEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "process-id")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "process-secret")
	vars := map[string]string{"AWS_ACCESS_KEY": "given-id", "AWS_SECRET_KEY": "given-secret", "AWS_SESSION_TOKEN": "tok"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	creds, _, err := credentialChain(context.Background(), Config{LookupEnv: lookup})
	if err != nil {
		t.Fatal(err)
	}
	v, err := creds.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v.AccessKeyID != "given-id" || v.SecretAccessKey != "given-secret" || v.SessionToken != "tok" {
		t.Errorf("credentials %q %q %q, want the given ones", v.AccessKeyID, v.SecretAccessKey, v.SessionToken)
	}

	// Nothing given: the error says what to set (the chain's other links,
	// a credentials file and an instance role, find nothing here). They
	// too read lookup's environment, not the process's.
	dir := t.TempDir()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	none := map[string]string{
		"AWS_SHARED_CREDENTIALS_FILE": dir + "/none",
		"AWS_CONFIG_FILE":             dir + "/none",
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
	if _, _, err := credentialChain(context.Background(), Config{LookupEnv: func(k string) (string, bool) { v, ok := none[k]; return v, ok }}); err == nil {
		t.Error("no credentials given, and the chain found some")
	}
}
