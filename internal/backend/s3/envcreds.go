package s3

import (
	"os"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// envCreds is the credential chain's first link: the AWS variables
// (AWS_ACCESS_KEY_ID or AWS_ACCESS_KEY, AWS_SECRET_ACCESS_KEY or
// AWS_SECRET_KEY, AWS_SESSION_TOKEN) as lookup finds them, which is how
// nestguard reads every other setting from its environment: a program that
// runs nestguard in-process gives it an environment of its own. It is
// minio-go's EnvAWS with lookup for the process's environment; without an
// ID and a secret it is anonymous, and the chain goes on.
func envCreds(lookup func(string) (string, bool)) *credentials.Static {
	get := func(k, alias string) string {
		if v, _ := lookup(k); v != "" {
			return v
		}
		v, _ := lookup(alias)
		return v
	}
	return &credentials.Static{Value: credentials.Value{
		AccessKeyID:     get("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"),
		SecretAccessKey: get("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"),
		SessionToken:    get("AWS_SESSION_TOKEN", "AWS_SESSION_TOKEN"),
		SignerType:      credentials.SignatureV4,
	}}
}

// lookupEnv is cfg.LookupEnv, or the process's environment.
func (cfg Config) lookupEnv() func(string) (string, bool) {
	if cfg.LookupEnv != nil {
		return cfg.LookupEnv
	}
	return os.LookupEnv
}
