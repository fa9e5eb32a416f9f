package location

import (
	"strings"
	"testing"
)

// TestHostileS47NoCredentialsInErrors (F9, LOW): a repository URL of a
// scheme nestguard does not take, with credentials in it (as other
// tools write https://KEY:SECRET@host/bucket or sftp://user:pw@host/x), is
// refused with the whole URL in the error, secret included: on stderr,
// in cron mail and the journal.
func TestHostileS47NoCredentialsInErrors(t *testing.T) {
	for _, repo := range []string{
		"https://AKIAEXAMPLE:s3cr3tKEY@s3.example.com/bucket",
		"sftp://backup:s3cr3tKEY@host/srv/backup",
		"s3:AKIAEXAMPLE:s3cr3tKEY@bucket/prefix",
	} {
		_, err := parse(repo)
		if err == nil {
			t.Errorf("%s: accepted", repo)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3tKEY") {
			t.Errorf("%s: the error shows the secret: %v", repo, err)
		}
	}
}
