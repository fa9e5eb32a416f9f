package s3

import (
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// envCreds is the credential chain's first link: the AWS variables
// (AWS_ACCESS_KEY_ID or AWS_ACCESS_KEY, AWS_SECRET_ACCESS_KEY or
// AWS_SECRET_KEY, AWS_SESSION_TOKEN) as lookup finds them, which is how
// nestguard reads every other setting from its environment: a program that
// runs nestguard in-process gives it an environment of its own. Without an
// ID and a secret it is nil, and the chain goes on.
func envCreds(lookup func(string) (string, bool)) aws.CredentialsProvider {
	get := func(k, alias string) string {
		if v, _ := lookup(k); v != "" {
			return v
		}
		v, _ := lookup(alias)
		return v
	}
	id := get("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY")
	secret := get("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY")
	if id == "" || secret == "" {
		return nil
	}
	token, _ := lookup("AWS_SESSION_TOKEN")
	return credentials.NewStaticCredentialsProvider(id, secret, token)
}

// lookupEnv is cfg.LookupEnv, or the process's environment.
func (cfg Config) lookupEnv() func(string) (string, bool) {
	if cfg.LookupEnv != nil {
		return cfg.LookupEnv
	}
	return os.LookupEnv
}
