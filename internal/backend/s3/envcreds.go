package s3

import (
	"os"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// envCreds is the credential chain's first link: the AWS variables
// (AWS_ACCESS_KEY_ID or AWS_ACCESS_KEY, AWS_SECRET_ACCESS_KEY or
// AWS_SECRET_KEY, AWS_SESSION_TOKEN) as lookup finds them, which is how
// nestguard reads every other setting from its environment: a program that
// runs nestguard in-process gives it an environment of its own.
// Environment credentials never expire.
type envCreds struct {
	lookup    func(string) (string, bool)
	retrieved bool
}

func (e *envCreds) get(k string) string {
	v, _ := e.lookup(k)
	return v
}

func (e *envCreds) Retrieve() (credentials.Value, error) {
	id := e.get("AWS_ACCESS_KEY_ID")
	if id == "" {
		id = e.get("AWS_ACCESS_KEY")
	}
	secret := e.get("AWS_SECRET_ACCESS_KEY")
	if secret == "" {
		secret = e.get("AWS_SECRET_KEY")
	}
	signer := credentials.SignatureV4
	if id == "" || secret == "" {
		signer = credentials.SignatureAnonymous
	}
	e.retrieved = true
	return credentials.Value{AccessKeyID: id, SecretAccessKey: secret, SessionToken: e.get("AWS_SESSION_TOKEN"), SignerType: signer}, nil
}

func (e *envCreds) RetrieveWithCredContext(*credentials.CredContext) (credentials.Value, error) {
	return e.Retrieve()
}

func (e *envCreds) IsExpired() bool { return !e.retrieved }

// lookupEnv is cfg.LookupEnv, or the process's environment.
func (cfg Config) lookupEnv() func(string) (string, bool) {
	if cfg.LookupEnv != nil {
		return cfg.LookupEnv
	}
	return os.LookupEnv
}
